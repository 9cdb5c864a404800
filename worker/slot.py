"""A task slot: one worker process that runs one subtask of every vertex of a slot sharing group.

Started by the local MiniCluster or by ``streamjob worker`` on Kubernetes (``slot_process.run_slot``
sets up the process and runs it). It connects to the
JobMaster's control port, proves it knows the job's secret (and checks that the JobMaster does:
``protocol.handshake``), registers its data address, and on ``deploy`` loads the job's
entrypoint itself (user code is never shipped), prepares its tasks (restore plans, the receiving
side of its channels for the attempt's token) and reports ``prepared``; on ``start``, sent once
every slot is prepared, it connects to the other slots (local hand-over within the process, TCP
between slots) and runs the tasks. Control messages (trigger, notify, abort,
finish, cancel) are dispatched to the tasks between batches. When an attempt fails the slot is
``release``d instead of ending (Flink's failover: the TaskManager stays): it stops its tasks, closes
the attempt's data connections, answers ``released`` and takes the next attempt's ``deploy``, with a
fresh attempt number and token. Exits 0 when its tasks finished, non-zero when the JobMaster is lost
or gives up on the job.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamjob.worker.api.metrics import MetricRegistry
from streamjob.worker.config import TlsSettings
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.failures import describe, failure_fields
from streamjob.worker.graph.job_graph import build_job_graph
from streamjob.worker.graph.topology import all_edges, consumers_of, producers_of
from streamjob.worker.loader import LoadedJob, job_record_classes, job_types, load_job
from streamjob.worker.protocol.framing import NO_CHANNEL, FrameKind, Limits, frame, read_frame
from streamjob.worker.protocol.handshake import CONTROL_LABEL, HandshakeError, connect
from streamjob.worker.protocol.messages import (
    TO_SLOT,
    Abort,
    Bye,
    Cancel,
    Deploy,
    Finish,
    Metrics,
    Notify,
    Prepared,
    ProtocolError,
    Register,
    Release,
    Released,
    SlotFailed,
    SlotFinished,
    Start,
    SubtaskRestore,
    TaskCounters,
    TaskFailed,
    ToJobMaster,
    ToSlot,
    Trigger,
    UserMetric,
    decode,
    encode,
)
from streamjob.worker.protocol.tls import (
    internal_client_context,
    internal_server_context,
    tls_mismatch_hint,
)
from streamjob.worker.runtime.channels import InputChannel, InputGate, LocalOutputChannel, OutputChannel, RecordWriter
from streamjob.worker.runtime.codec import RecordCodec
from streamjob.worker.runtime.in_flight_restore import read_in_flight
from streamjob.worker.runtime.inline_writes import InlineWritePolicy
from streamjob.worker.runtime.local_recovery import LocalFirstReader, local_recovery_root
from streamjob.worker.runtime.network import DataServer, PeerConnection
from streamjob.worker.runtime.operators import OperatorRestore
from streamjob.worker.runtime.task import Task
from streamjob.worker.runtime.task_setup import TaskRestore, TaskServices
from streamjob.worker.state.key_groups import KeyGroupAssigner, key_group_range
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage, JobStorageLocation
from streamjob.worker.storage.s3_settings import s3_settings_for
from streamjob.worker.storage.stores import StoreFactory

log = logging.getLogger(__name__)

#: How long a slot keeps trying to reach its JobMaster. The operator starts worker pods together with
#: the JobMaster pod, so a slot may wait out the JobMaster's whole start-up (an image pull, say); the
#: operator's own pod start timeout ends an attempt whose JobMaster never comes.
JOBMASTER_WAIT_S = 600.0
#: A slot that hears nothing from its JobMaster for this long (it pings every 15 s) gives up on it.
HEARTBEAT_S = 60.0
#: How long a released slot waits for its tasks to end (they end at their next batch or wait). A task held
#: longer by user code makes the slot exit instead, so that a fresh process takes its place.
RELEASE_WAIT_S = 10.0


class Slot:
    """One slot process."""

    def __init__(
        self,
        jobmaster: str,
        data_host: str,
        secret: str,
        work_dir: Path | None = None,
        tls: TlsSettings | None = None,
        *,
        loader: Callable[[str, list[str]], LoadedJob] = load_job,
        stores: StoreFactory | None = None,
    ) -> None:
        """``tls``: the job's internal TLS files (mutual TLS on the control and data connections).

        ``loader`` builds the job from the deployed entrypoint and arguments: ``load_job`` (the slot
        imports the job itself); the in-process test kit passes one that copies a built pipeline.
        ``stores`` opens the checkpoint storage's URIs (default: files and S3 with the job's S3
        settings); the test kit passes its in-memory storage.
        """
        self.loader = loader
        self.stores = stores
        self.jobmaster = jobmaster
        self.tls_client = internal_client_context(tls) if tls else None
        self.secret = secret
        self.limits = Limits()
        self.data_host = data_host
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="streamjob-slot-"))
        self.tasks: dict[tuple[str, int], Task] = {}
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="snapshot")
        self.writer: asyncio.StreamWriter | None = None
        self.failed: str | None = None
        self.done = asyncio.Event()
        self.peers: dict[int, PeerConnection] = {}
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.running: set[asyncio.Task[None]] = set()
        self.closed_tasks = 0
        self.stay_after_finish = False
        """A rescale in place finishes the tasks: the slot stays for the next deployment (``Finish.stay``)."""
        self.attempt: int | None = None
        """The attempt whose deployment this slot holds (None before the first and after a release)."""
        self.data = DataServer(
            RecordCodec(),
            secret,
            on_error=self._fail,
            limits=self.limits,
            tls=internal_server_context(tls) if tls else None,
        )

    def send(self, message: ToJobMaster) -> None:
        """Sends a control message to the JobMaster (fire and forget, ordered)."""
        self.outbox.put_nowait(frame(FrameKind.MESSAGE, NO_CHANNEL, encode(message)))

    async def _send_loop(self, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await self.outbox.get()
            if writer.is_closing():
                return
            writer.write(data)
            try:
                await writer.drain()
            except ConnectionError:
                return  # the receiving side notices the lost JobMaster

    def _fail(self, reason: str, failure: dict[str, Any] | None = None) -> None:
        """Reports the slot's failure; ``failure``: ``failures.failure_fields`` when it is final."""
        if self.failed is None:
            self.failed = reason
            log.error("slot failing: %s", reason)
            self.send(SlotFailed(error=reason, **(failure or {})))

    async def run(self) -> int:
        """Registers and serves until the job ends; the process exit code (one error line if refused)."""
        try:
            return await self._run()
        except ConfigError as err:
            log.error("%s", err)
            return err.exit_code

    async def _run(self) -> int:
        host, port = await self.data.start(self.data_host, 0)
        advertised = os.environ.get("POD_IP") or (self.data_host if self.data_host not in ("0.0.0.0", "") else host)
        reader, self.writer = await self._connect()
        self.send(Register(data_host=advertised, data_port=port, pid=os.getpid()))
        sender = asyncio.create_task(self._send_loop(self.writer))
        metrics = asyncio.create_task(self._report_metrics())
        try:
            await self._receive(reader)
        finally:
            metrics.cancel()
            await asyncio.sleep(0.05)
            sender.cancel()
            self.writer.close()
        for peer in self.peers.values():
            await peer.close()
        await self.data.close()
        if self.done.is_set() and self.failed is None:
            return 0
        log.error("lost the JobMaster at %s; exiting", self.jobmaster)
        return 1

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        """Dispatches the JobMaster's messages until the job ends or the connection does."""
        while not self.done.is_set():
            try:
                kind, _, payload = await asyncio.wait_for(read_frame(reader, self.limits.message_bytes), HEARTBEAT_S)
            except TimeoutError:
                log.error("no word from the JobMaster at %s for %.0f s", self.jobmaster, HEARTBEAT_S)
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except ProtocolError as err:
                log.error("dropped the control connection to the JobMaster at %s: %s", self.jobmaster, err)
                return
            try:
                if kind != FrameKind.MESSAGE:
                    raise ProtocolError(f"a frame of kind {kind} on the control channel")
                message = decode(payload, TO_SLOT)
            except ProtocolError as err:
                log.warning("ignored a control message from the JobMaster at %s: %s", self.jobmaster, err)
                continue
            await self._dispatch(message)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connects to the JobMaster's control port and authenticates (retrying while it starts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOBMASTER_WAIT_S
        host, _, port = self.jobmaster.rpartition(":")
        last_hint = ""
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=self.tls_client)
                await connect(reader, writer, self.secret, CONTROL_LABEL, limits=self.limits)
                return reader, writer
            except (OSError, HandshakeError) as err:
                if writer is not None:
                    writer.close()
                if isinstance(err, ssl.SSLCertVerificationError):
                    raise ConfigError(
                        f"the JobMaster at {self.jobmaster} has no certificate of the job's CA "
                        f"({err.verify_message}); check the internal TLS files"
                    ) from None
                if isinstance(err, HandshakeError) and not err.before_challenge:
                    raise ConfigError(f"the JobMaster at {self.jobmaster} refused this slot: {err}") from None
                hint = tls_mismatch_hint(err, tls_on=self.tls_client is not None)
                if hint and hint != last_hint:
                    log.warning("connecting to the JobMaster at %s: %s", self.jobmaster, hint)
                last_hint = hint
                if loop.time() > deadline:
                    raise ConfigError(
                        f"cannot reach the JobMaster's control port at {self.jobmaster} within "
                        f"{JOBMASTER_WAIT_S:.0f} s ({err}){'; ' + hint if hint else ''}"
                    ) from None
                await asyncio.sleep(0.1)

    async def _dispatch(self, message: ToSlot) -> None:
        if isinstance(message, Deploy):
            try:
                await self._deploy(message)
            except Exception as err:
                log.exception("deployment failed")
                self._fail(f"deploying tasks failed: {err}", failure_fields(err, deploying=True))
        elif isinstance(message, Start):
            try:
                await self._start()
            except Exception as err:
                log.exception("starting the tasks failed")
                self._fail(f"starting tasks failed: {err}")
        elif isinstance(message, Trigger):
            barrier = message.barrier.to_barrier()
            for task in self.tasks.values():
                if task.vertex.is_source:
                    task.trigger_checkpoint(barrier)
        elif isinstance(message, Notify):
            for task in self.tasks.values():
                self._guard(task, task.notify_complete, message.cp)
        elif isinstance(message, Abort):
            for task in self.tasks.values():
                self._guard(task, task.notify_aborted, message.cp)
        elif isinstance(message, Finish):
            log.info("finishing the tasks%s", " (the job is rescaled in place)" if message.stay else "")
            self.stay_after_finish = message.stay
            self._expect_disconnects()
            for task in self.tasks.values():
                task.finish()
        elif isinstance(message, Bye):
            self._expect_disconnects()
            for task in self.tasks.values():
                task.cancel()
            if message.outcome == "failed":
                self.failed = self.failed or "the job attempt failed"
            self.done.set()
        elif isinstance(message, Cancel):
            self._expect_disconnects()
            for task in self.tasks.values():
                task.cancel()
            self.done.set()
        elif isinstance(message, Release):
            await self._release(message.attempt)

    async def _release(self, attempt: int) -> None:
        """Stops the tasks of a failed attempt and forgets its connections; the slot takes the next deployment.

        The control connection is ordered, so the next ``deploy`` is read only after this returns: no
        task of the failed attempt runs beside the next one (its two-phase-commit sinks stop before the
        next attempt recovers their transactions). Tasks that do not end within ``RELEASE_WAIT_S``
        (user code holding the loop) make the slot exit: the JobMaster then gets a fresh process.
        """
        self._expect_disconnects()
        for task in self.tasks.values():
            task.cancel()
        running = set(self.running)
        if running:
            _, pending = await asyncio.wait(running, timeout=RELEASE_WAIT_S)
            if pending:
                self._fail(f"{len(pending)} task(s) of attempt {attempt} did not stop within {RELEASE_WAIT_S:.0f} s")
                self.done.set()
                return
        for peer in self.peers.values():
            await peer.close()
        self.peers = {}
        self.data.reset()
        old_dir = self.work_dir / f"attempt-{self.attempt}" if self.attempt is not None else None
        self.tasks, self.closed_tasks, self.failed, self.attempt = {}, 0, None, None
        self.stay_after_finish = False
        gc.unfreeze()  # the failed attempt's objects were frozen by its start: let the collector have them
        if old_dir is not None:  # the failed attempt's local state (RocksDB instances, spill files)
            self.executor.submit(shutil.rmtree, old_dir, True)
        log.info("released from attempt %d; waiting for the next deployment", attempt)
        self.send(Released(attempt=attempt))

    def _expect_disconnects(self) -> None:
        """The job is ending: peers closing their connections is no failure."""
        self.data.closing = True
        for peer in self.peers.values():
            peer.closing = True

    def _guard(self, task: Task, fn: Any, arg: Any) -> None:
        try:
            fn(arg)
        except Exception as err:
            log.exception("%s failed in %s", fn.__name__, task.name)
            self._report_failure(task, err)

    def _report_failure(self, task: Task, err: Exception) -> None:
        """Tells the JobMaster; a damaged restore point is marked so that it is not restored again."""
        described = describe(err)
        self.send(
            TaskFailed(
                vertex=task.vertex.id,
                subtask=task.subtask,
                error=f"{type(err).__name__}: {err}",
                exception=described.exception,
                operator_uid=described.operator_uid,
                traceback=list(described.traceback),
                **failure_fields(err),
            )
        )

    async def _deploy(self, message: Deploy) -> None:
        config = message.config
        loaded = self.loader(config.entrypoint, config.args)
        env = loaded.env
        graph = build_job_graph(
            env.transformations,
            default_parallelism=env.parallelism,
            max_parallelism=config.max_parallelism or env.max_parallelism,
            parallelism_override=config.parallelism,
        )
        if graph.fingerprint() != message.fingerprint:
            raise PipelineError(
                "this worker built a different job graph than the JobMaster: are they running "
                "the same image and job arguments?"
            )
        index = message.slot_index
        attempt = message.attempt
        self.attempt = attempt
        codec = RecordCodec(job_record_classes(loaded))
        self.data.codec, self.data.token, self.data.attempt = codec, message.token, attempt
        self.data.max_frame = config.max_frame_bytes
        location = JobStorageLocation.parse(
            message.checkpoints_uri,
            message.savepoints_uri,
            namespace=config.namespace,
            name=config.name,
            job_id=message.job_id,
        )
        storage = CheckpointStorage(location, stores=self.stores or StoreFactory(s3_settings_for(config.s3)))
        if not storage.local_disk:  # the client's set-up now, while the slot is idle, not in the first checkpoint
            self.executor.submit(storage.warm_up)
        settings = message.settings
        services = TaskServices(
            job_id=message.job_id,
            job_name=config.name,
            attempt=attempt,
            settings=settings,
            backend_kind=message.backend,
            incremental=message.incremental,
            batch_size=message.batch_size,
            local_dir=self.work_dir / f"attempt-{attempt}",
            storage=storage,
            executor=self.executor,
            send=self.send,
            record_types=job_types(loaded),
            local_recovery_dir=local_recovery_root(config.namespace, config.name, message.job_id)
            if settings.local_recovery
            else None,
            inline_writes=InlineWritePolicy(local_disk=storage.local_disk),
        )
        edges = all_edges(graph)
        edge_no = {id(e): n for n, e in enumerate(edges)}
        slot_of = graph.slot_of  # slot sharing groups: where each subtask runs (graph/slot_groups.py)
        mine = [(v, i) for v in graph.vertices for i in range(v.parallelism) if slot_of(v.id, i) == index]
        gates: dict[str, InputGate] = {}
        inputs: dict[tuple[int, int, int], InputChannel] = {}
        for v, i in mine:
            gate = InputGate()
            for e in v.inputs:
                for s in producers_of(e, graph, i):
                    channel = gate.add_channel((edge_no[id(e)], s, i))
                    inputs[channel.key] = channel
                    if slot_of(e.source, s) != index:
                        self.data.register(channel)
            gates[v.id] = gate
        for address in message.slots:
            if address.slot != index:
                self.peers[address.slot] = PeerConnection(
                    (address.host, address.port),
                    codec,
                    self._fail,
                    secret=self.secret,
                    attempt=attempt,
                    token=message.token,
                    max_frame=config.max_frame_bytes,
                    tls=self.tls_client,
                )
        restores = message.restore
        base = message.restore_base
        reader: Any = storage.reader(base) if base else None
        if reader is not None and services.local_recovery_dir is not None and base:
            reader = LocalFirstReader(reader, services.local_recovery_dir, base)
        for v, i in mine:
            writers = []
            for e in v.outputs:
                target = graph.vertex(e.target)
                channels: list[OutputChannel] = []
                for d in consumers_of(e, graph, i):
                    key = (edge_no[id(e)], i, d)
                    slot = slot_of(e.target, d)
                    channels.append(LocalOutputChannel(inputs[key]) if slot == index else self.peers[slot].channel(key))
                writer = RecordWriter(channels, e.partitioning, e.key_selector, target.max_parallelism, i)
                if config.buffer_debloat.enabled:
                    writer.debloat(config.buffer_debloat, message.batch_size)
                writers.append(writer)
            plan = restores.get(f"{v.id}/{i}")
            restore = self._task_restore(plan, reader, v, i, services) if plan is not None and reader else None
            task = Task(v, i, services, gates[v.id], writers, restore)
            self.tasks[(v.id, i)] = task
        self.send(Prepared(tasks=len(self.tasks)))

    async def _start(self) -> None:
        """``start``: every slot of the attempt is prepared, so their data servers accept this attempt.

        Connecting to a peer before it prepared would be refused (its data server still expects the
        previous attempt's token), which is why deployment has two phases: ``deploy`` (prepare) and
        ``start`` (connect the peers and run the tasks).
        """
        await asyncio.gather(*(p.connect() for p in self.peers.values()))
        for task in self.tasks.values():
            running = asyncio.create_task(self._run_task(task))
            self.running.add(running)
            running.add_done_callback(self.running.discard)
        gc.freeze()  # the job's code and the tasks' long-lived objects leave the collector's view

    def _task_restore(
        self, plan: SubtaskRestore, reader: Any, vertex: Any, index: int, services: TaskServices
    ) -> TaskRestore:
        ops: dict[str, OperatorRestore] = {}
        uids = set(plan.keyed) | set(plan.operator)
        for uid in uids:
            keyed = list(plan.keyed.get(uid, []))
            operator = [list(per) for per in plan.operator.get(uid, [])]
            ops[uid] = OperatorRestore(reader, keyed, operator)
        for op in vertex.operators:
            ops.setdefault(op.effective_uid(), OperatorRestore(reader))
        in_flight = read_in_flight(reader, list(plan.in_flight), SafeSerializer(services.record_types))
        if plan.filter_in_flight_by_key and in_flight:
            start, end = key_group_range(vertex.max_parallelism, vertex.parallelism, index)
            assign = KeyGroupAssigner(vertex.max_parallelism).assign
            select = vertex.head.key_selector
            in_flight = [r for r in in_flight if start <= assign(select(r)) <= end]
        return TaskRestore(ops, in_flight)

    async def _run_task(self, task: Task) -> None:
        try:
            await task.run()
        except Exception as err:
            log.exception("task %s failed", task.name)
            self._report_failure(task, err)
            return
        if task.cancelled:
            return  # cancelled, released: the slot did not finish
        self.closed_tasks += 1
        log.info("task %s ended (%d of %d)", task.name, self.closed_tasks, len(self.tasks))
        if self.closed_tasks == len(self.tasks):
            self.send(SlotFinished())
            if self.stay_after_finish:
                return  # a rescale: the JobMaster releases this slot and deploys the next attempt to it
            attempt = self.attempt
            await asyncio.sleep(0.2)
            if self.stay_after_finish or self.attempt != attempt:
                return  # a Finish(stay) or a Release read meanwhile: the slot takes the next deployment
            self.done.set()
            if self.writer is not None:
                self.writer.close()  # ends the wait for the JobMaster's next message

    async def _report_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.send(
                Metrics(
                    tasks=[
                        TaskCounters(
                            vertex=t.vertex.id,
                            subtask=t.subtask,
                            records_in=t.records_in,
                            records_out=t.records_out,
                            backpressured_s=t.backpressured_s(),
                            user=_user_metrics(t.user_metrics) if t.user_metrics else [],
                        )
                        for t in self.tasks.values()
                    ]
                )
            )


def _user_metrics(registry: MetricRegistry) -> list[UserMetric]:
    """A task's user metrics as the report carries them."""
    return [
        UserMetric(name=m.name, kind=m.kind, labels=dict(m.labels), values=m.values)  # type: ignore[arg-type]
        for m in registry.snapshot(time.monotonic())
    ]
