"""The JobMaster: runs attempts of one job — deploy, coordinate checkpoints, restart on failure.

Started by ``streamjob jobmaster`` (Kubernetes) or in-process by ``streamjob run`` (local).
Each attempt: wait for the slots, plan the restore (latest checkpoint of this jobId, else the
requested snapshot), deploy in two phases (every slot prepares its tasks, then all start: a slot
connects to its peers only once they accept the attempt), run the CheckpointCoordinator, and wait
for the attempt to end
(finished, cancelled, or failed). With ``restart_in_place`` (local mode) a failure restarts the
job under the restart strategy; on Kubernetes the JobMaster exits and the operator restarts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamjob.worker.checkpoint.acks import TaskAck
from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator
from streamjob.worker.checkpoint.decider import SavepointTrigger
from streamjob.worker.checkpoint.failures import CheckpointFailureReason
from streamjob.worker.checkpoint.pending import PendingCheckpoint
from streamjob.worker.checkpoint.restore import SubtaskRestorePlan, plan_restore
from streamjob.worker.checkpoint.stats import CheckpointStats
from streamjob.worker.config import CheckpointSettings, ExternalizedCheckpointCleanup, JobConfig, RestartStrategy
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.failures import final_at_start, final_failure
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.jobmaster.launcher import Launcher
from streamjob.worker.jobmaster.savepoint_targets import check_savepoint_target, savepoint_roots
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.loader import LoadedJob
from streamjob.worker.protocol.messages import (
    Ack,
    Cancel,
    Decline,
    Deploy,
    EndOfInput,
    Finish,
    Metrics,
    Prepared,
    SlotAddress,
    SlotFailed,
    SlotFinished,
    Start,
    SubtaskRestore,
    TaskFailed,
    ToJobMaster,
)
from streamjob.worker.protocol.rest import (
    FailureDetail,
    JobOverview,
    JobState,
    SavepointStatus,
    SavepointView,
    VertexView,
    WorkerView,
)
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage, JobStorageLocation
from streamjob.worker.storage.s3_settings import s3_settings_for
from streamjob.worker.storage.snapshots import LoadedSnapshot
from streamjob.worker.storage.stores import StoreFactory

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class SavepointRequest:
    """One ``POST /savepoints`` and how it ended."""

    id: str
    status: SavepointStatus = SavepointStatus.IN_PROGRESS
    location: str | None = None
    reason: str | None = None
    checkpoint_id: int | None = None
    stop: bool = False
    directory: str | None = None

    def view(self) -> SavepointView:
        """The body of ``GET /savepoints/<id>``."""
        return SavepointView(
            request_id=self.id,
            status=self.status,
            location=self.location,
            reason=self.reason,
            checkpoint_id=self.checkpoint_id,
            stop=self.stop,
        )


@dataclass
class TaskMetrics:
    """Counters a slot reported for one task."""

    records_in: int = 0
    records_out: int = 0
    backpressured_s: float = 0.0


@dataclass
class AttemptOutcome:
    """How an attempt ended."""

    kind: str  # finished | cancelled | failed
    reason: str | None = None
    final: bool = False
    """A failure no restart can mend (the restore point's state is corrupt): the job fails at once."""


def default_restart(settings: CheckpointSettings) -> RestartStrategy:
    """Flink's default: restart (fixed delay) when checkpointing is on, else fail."""
    if settings.interval_ms is None:
        return RestartStrategy(kind="none", attempts=0)
    return RestartStrategy(kind="fixed-delay", attempts=2**31 - 1, delay_ms=1000)


@dataclass
class JobPlan:
    """The resolved job: graph, settings and storage, fixed for the JobMaster's life."""

    config: JobConfig
    loaded: LoadedJob
    graph: JobGraph
    settings: CheckpointSettings
    restart: RestartStrategy
    checkpoints_uri: str
    savepoints_uri: str | None
    backend: str
    incremental: bool
    job_id: str
    restore_target: str | None
    fresh_lineage: bool
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_plan(config: JobConfig, loaded: LoadedJob, *, default_checkpoints_uri: str) -> JobPlan:
    """Merges the job's code settings with the config's overrides; ``ConfigError`` names bad values."""
    env = loaded.env
    settings = config.checkpoint.apply(env.checkpoint_config.settings())
    graph = build_job_graph(
        env.transformations,
        default_parallelism=env.parallelism,
        max_parallelism=config.max_parallelism or env.max_parallelism,
        parallelism_override=config.parallelism,
    )
    backend = config.state_backend or env.state_backend.kind
    incremental = settings.incremental or env.state_backend.incremental
    checkpoints_uri = config.checkpoints_uri or env.checkpoint_config.storage or default_checkpoints_uri
    savepoints_uri = config.savepoints_uri or checkpoints_uri.rstrip("/") + "-savepoints"
    return JobPlan(
        config,
        loaded,
        graph,
        settings,
        config.restart or env.restart_strategy or default_restart(settings),
        checkpoints_uri,
        savepoints_uri,
        backend,
        incremental,
        config.job_id or "",
        config.restore_from,
        config.job_id is None,
    )


class JobMaster:
    """Owns one job until it finishes, is cancelled, or fails for good."""

    def __init__(
        self,
        plan: JobPlan,
        *,
        launcher: Launcher | None = None,
        events: EventSink | None = None,
        hold_deploy_until: float | None = None,
        stores: StoreFactory | None = None,
    ) -> None:
        """``hold_deploy_until`` (``time.monotonic()``): no task of the first attempt is deployed before it.

        ``stores`` opens the checkpoint storage's URIs (default: files and S3 with the job's S3
        settings); the in-process test kit passes its in-memory storage.
        """
        self.plan = plan
        self.stores = stores
        self.hold_deploy_until = hold_deploy_until
        self.config = plan.config
        self.graph = plan.graph
        self.launcher = launcher
        self.events = events or (lambda kind, data: None)
        self.registry = SlotRegistry()
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobmaster-io")
        self.stats = CheckpointStats()
        self.state = JobState.CREATED
        self.attempt = plan.config.attempt
        self.restarts = 0
        self.job_id = plan.job_id
        self.start_time = time.time()
        self.restored_from: str | None = None
        self.failure: str | None = None
        self.failure_detail: FailureDetail | None = None
        self.savepoints: dict[str, SavepointRequest] = {}
        self.task_metrics: dict[tuple[str, int], TaskMetrics] = {}
        self.coordinator: CheckpointCoordinator | None = None
        self.storage: CheckpointStorage | None = None
        self._outcome: asyncio.Future[AttemptOutcome] | None = None
        self._cancel_requested: asyncio.Event | None = None  # set by cancel(); also ends restart waits
        self._ended_input: set[tuple[str, int]] = set()
        self._finished_slots: set[int] = set()
        self._prepared: set[int] = set()
        self._all_prepared = asyncio.Event()
        self._final_checkpoint: int | None = None
        self.exit_code = 0
        self.final = False
        """The job failed in a way no restart can mend (the operator must not restart it either)."""

    # -- job lifecycle ------------------------------------------------------------------------------
    def _open_storage(self) -> CheckpointStorage:
        location = JobStorageLocation.parse(
            self.plan.checkpoints_uri,
            self.plan.savepoints_uri,
            namespace=self.config.namespace,
            name=self.config.name,
            job_id=self.job_id,
        )
        return CheckpointStorage(location, stores=self.stores or StoreFactory(s3_settings_for(self.config.s3)))

    async def _resolve_start(self) -> str | None:
        """Picks the jobId and the first restore point (``latest`` continues the newest lineage)."""
        loop = asyncio.get_running_loop()
        target = self.plan.restore_target
        if target == "latest" and not self.job_id:
            from streamjob.worker.storage.lineages import latest_lineage

            found = await loop.run_in_executor(
                self.executor,
                lambda: latest_lineage(
                    self.plan.checkpoints_uri,
                    self.config.namespace,
                    self.config.name,
                    s3_settings_for(self.config.s3),
                    stores=self.stores,
                ),
            )
            if found is None:
                raise ConfigError(
                    f"--restore latest: no completed checkpoint of job '{self.config.name}' under "
                    f"{self.plan.checkpoints_uri}; start without --restore, or give a snapshot URI"
                )
            self.job_id = found
        if not self.job_id:
            self.job_id = uuid.uuid4().hex[:16]
        self.storage = self._open_storage()
        storage = self.storage
        if target is None:
            restore = None
        elif target == "latest":
            ref = await loop.run_in_executor(self.executor, storage.latest_retained)
            restore = ref.metadata_uri if ref is not None else None
        else:
            restore = await loop.run_in_executor(self.executor, storage.resolve_restore_target, target)
        if self.plan.fresh_lineage or await loop.run_in_executor(self.executor, storage.read_lineage) is None:
            await loop.run_in_executor(self.executor, storage.write_lineage, restore)
        return restore

    async def run(self) -> int:
        """Runs attempts until the job ends; returns the process exit code.

        Problems found before the first attempt (storage unreachable, a corrupted or incompatible
        snapshot, a uid mismatch) raise ``StreamJobError`` before any worker starts, so the CLI
        reports them as one error line with the error's exit code.
        """
        try:
            restore = await self._resolve_start()
            loaded = await self._load(restore) if restore else None
            if loaded is not None:
                plan_restore(loaded.metadata, self.graph, allow_non_restored_state=self.config.allow_non_restored_state)
        except StreamJobError as err:
            self.state, self.failure, self.final = JobState.FAILED, str(err), final_at_start(err)
            self.failure_detail = FailureDetail(exception=type(err).__name__, message=str(err), attempt=self.attempt)
            raise
        while True:
            outcome = await self._run_attempt(loaded)
            await self._completions_written()
            if outcome.kind == "failed" and self._cancelling():
                outcome = AttemptOutcome("cancelled")  # cancelled while the attempt was failing
            if outcome.kind == "cancelled":
                await self._cleanup_after_cancel()
            if outcome.kind != "failed":
                self.state = JobState.FINISHED if outcome.kind == "finished" else JobState.CANCELED
                self.events(self.state.lower(), {})
                return 0
            self.failure = outcome.reason
            self.restarts += 1
            delay = (
                self.plan.restart.delay_for(self.restarts)
                if self.config.restart_in_place and not outcome.final
                else None
            )
            if delay is None or self.launcher is None:
                self.state, self.final = JobState.FAILED, outcome.final
                self.events("failed", {"reason": outcome.reason, "restarts": self.restarts - 1})
                return self.exit_code or 5
            self.state = JobState.RESTARTING
            self.events("restarting", {"reason": outcome.reason, "delay_ms": delay, "restart": self.restarts})
            await self._restart_delay(delay / 1000)
            self.attempt += 1
            try:
                storage = self._require_storage()
                latest = await asyncio.get_running_loop().run_in_executor(self.executor, storage.latest_retained)
                loaded = await self._load(latest.metadata_uri) if latest is not None else loaded
            except StreamJobError as err:
                # Storage briefly unreachable: this restart fails too; the strategy decides whether to retry.
                loaded = await self._retry_restore(err)

    async def _retry_restore(self, first: StreamJobError) -> LoadedSnapshot | None:
        """Finds the restore point again under the restart strategy while storage is unreachable."""
        error: StreamJobError = first
        while True:
            self.restarts += 1
            delay = self.plan.restart.delay_for(self.restarts)
            if delay is None:
                raise error
            self.events(
                "restarting",
                {"reason": f"cannot find the latest checkpoint: {error}", "delay_ms": delay, "restart": self.restarts},
            )
            await self._restart_delay(delay / 1000)
            if self._cancelling():
                return None  # the next attempt sees the cancellation at once
            try:
                storage = self._require_storage()
                latest = await asyncio.get_running_loop().run_in_executor(self.executor, storage.latest_retained)
                return await self._load(latest.metadata_uri) if latest is not None else None
            except StreamJobError as err:
                error = err

    def _require_storage(self) -> CheckpointStorage:
        assert self.storage is not None
        return self.storage

    async def _load(self, uri: str) -> LoadedSnapshot:
        storage = self._require_storage()
        loop = asyncio.get_running_loop()
        loaded: LoadedSnapshot = await loop.run_in_executor(self.executor, storage.load_metadata, uri)
        await loop.run_in_executor(self.executor, storage.import_shared, loaded)
        return loaded

    def _cancelling(self) -> bool:
        return self._cancel_requested is not None and self._cancel_requested.is_set()

    async def _restart_delay(self, seconds: float) -> None:
        """The restart strategy's delay, cut short by a cancellation."""
        if self._cancel_requested is None:
            self._cancel_requested = asyncio.Event()
        try:
            await asyncio.wait_for(self._cancel_requested.wait(), seconds)
        except TimeoutError:
            pass

    async def _run_attempt(self, restore: LoadedSnapshot | None) -> AttemptOutcome:
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        if self._cancelling():
            return AttemptOutcome("cancelled")  # cancelled between attempts: start nothing
        self._prepared = set()
        self._all_prepared = asyncio.Event()
        self._ended_input = set()
        self._finished_slots = set()
        self._final_checkpoint = None
        self.task_metrics = {}
        self.state = JobState.DEPLOYING if self.restarts == 0 else JobState.RECOVERING
        slots = self.graph.slots
        if self.launcher is None and self.config.total_slots < slots:
            return AttemptOutcome(
                "failed",
                f"the job needs {slots} slots (its largest parallelism) but "
                f"workers × slots per worker = {self.config.total_slots}",
            )
        self.registry.open_for(slots)
        if self.launcher is not None:
            self.launcher.start(slots, self.jobmaster_address, self.attempt)
        # The restore plan and the next checkpoint id need no slot: work them out while the slots start
        # and register, so that the deployment follows the last registration at once.
        at_least = (restore.metadata.checkpoint_id + 1) if restore and restore.metadata.job_id == self.job_id else 1
        if self.coordinator is not None:  # ids the last attempt used without leaving a directory (expired early)
            at_least = max(at_least, self.coordinator.next_id)
        first_id_lookup = loop.run_in_executor(
            self.executor, lambda: self._require_storage().next_checkpoint_id(at_least=at_least)
        )
        # An attempt that ends before it deploys never awaits the lookup: retrieve its error anyway.
        first_id_lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            try:
                plans = (
                    plan_restore(
                        restore.metadata,
                        self.graph,
                        allow_non_restored_state=self.config.allow_non_restored_state,
                        ignore_in_flight=restore.metadata.checkpoint_id
                        == self.plan.settings.id_of_ignored_in_flight_data,
                    )
                    if restore
                    else {}
                )
            except StreamJobError as err:
                self.exit_code = err.exit_code
                self.plan.restart = RestartStrategy(kind="none", attempts=0)
                return await self._end_attempt(AttemptOutcome("failed", str(err), final_at_start(err)))
            if not await self._until_registered(slots):
                if self._outcome.done():  # cancelled, or a slot process failed, while the slots registered
                    return await self._end_attempt(self._outcome.result())
                return await self._end_attempt(
                    AttemptOutcome(
                        "failed",
                        f"only {len(self.registry.slots)} of {slots} worker slots registered within "
                        f"{self.config.worker_register_timeout_ms} ms",
                    )
                )
            self.restored_from = restore.metadata_uri if restore else None
            self.stats.restored_from = self.restored_from
            first_id = await first_id_lookup
            self._deploy(restore, plans)
            if not await self._until_prepared() or not await self._hold_deploy():
                assert self._outcome.done()
                return await self._end_attempt(self._outcome.result())
            self.registry.broadcast(Start())
            self.coordinator = self._make_coordinator(first_id)
            self.state = JobState.RUNNING
            self.events(
                "running",
                {
                    "attempt": self.attempt,
                    "restored_from": self.restored_from,
                    "checkpoint": restore.metadata.checkpoint_id if restore else None,
                    "kind": restore.metadata.kind if restore else None,
                },
            )
            self.coordinator.start()
            outcome = await self._outcome
            return await self._end_attempt(outcome)
        except asyncio.CancelledError:
            await self._end_attempt(AttemptOutcome("cancelled"))
            raise

    async def _until_registered(self, slots: int) -> bool:
        """Waits until ``slots`` slots registered; False on timeout or when the attempt ended meanwhile.

        A cancel (Ctrl-C, ``POST /cancel``), a failure, or a local slot process that exits before it
        registered ends the wait at once instead of after the registration timeout.
        """
        assert self._outcome is not None
        ended: asyncio.Future[Any] = self._outcome
        registered: asyncio.Future[Any] = asyncio.ensure_future(
            self.registry.wait_for_all(slots, self.config.worker_register_timeout_ms / 1000)
        )
        try:
            while not registered.done() and not ended.done():
                await asyncio.wait(
                    {ended, registered},
                    timeout=0.25 if self.launcher is not None else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if self.launcher is not None and not registered.done():
                    self._check_slot_processes()
        finally:
            if not registered.done():
                registered.cancel()
        return not ended.done() and not registered.cancelled() and bool(registered.result())

    def _check_slot_processes(self) -> None:
        """Fails the attempt when a local slot process ended before it registered (it cannot any more)."""
        assert self.launcher is not None
        for index, code, log_file in self.launcher.exited():
            self.fail(
                f"slot process {index} exited with code {code} before it registered with the JobMaster; "
                f"{_last_line(log_file)}see its log {log_file}"
            )
            return

    async def _until_prepared(self) -> bool:
        """Waits until every slot prepared its tasks (``prepared``); False if the attempt failed meanwhile.

        Only then are the slots told to ``start``: a slot connects to its peers' data servers, which
        accept the attempt's token once they are prepared. A slot that does not prepare in time fails
        the attempt.
        """
        assert self._outcome is not None
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._all_prepared.wait())
        ended: asyncio.Future[Any] = self._outcome
        timeout = self.config.worker_register_timeout_ms / 1000
        try:
            await asyncio.wait({ended, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self._outcome.done() and not self._all_prepared.is_set():
            self.fail(
                f"only {len(self._prepared)} of {len(self.registry.slots)} worker slots prepared their tasks "
                f"within {self.config.worker_register_timeout_ms} ms"
            )
        return not self._outcome.done()

    async def _hold_deploy(self) -> bool:
        """Waits out the rest of the operator's restart backoff; False if the attempt failed meanwhile.

        The operator starts the pods of the next attempt before its backoff is over, so that the
        processes start while it runs out (``streamjob jobmaster --hold-deploy``); the slots prepare
        their tasks meanwhile (loading the job, reading the restore plan), but the tasks, and so the
        job's sources, sinks and checkpoints, run no sooner than the backoff allows.
        """
        until, self.hold_deploy_until = self.hold_deploy_until, None
        delay = (until - time.monotonic()) if until is not None else 0.0
        if delay <= 0 or self._outcome is None:
            return True
        log.info("holding the deployment for %.2f s: the restart backoff is not over", delay)
        await asyncio.wait({self._outcome}, timeout=delay)
        return not self._outcome.done()

    async def _end_attempt(self, outcome: AttemptOutcome) -> AttemptOutcome:
        if self.coordinator is not None:
            why = CheckpointFailureReason.JOB_FINISHED if outcome.kind == "finished" else None
            self.coordinator.stop(why or CheckpointFailureReason.JOB_STOPPING)
        if outcome.kind == "cancelled":
            self.registry.broadcast(Cancel())
            await asyncio.sleep(0.1)
        await self.registry.say_goodbye(outcome.kind)
        for request in self.savepoints.values():
            if request.status is SavepointStatus.IN_PROGRESS:
                request.status, request.reason = (
                    SavepointStatus.FAILED,
                    f"the job attempt ended: {outcome.reason or outcome.kind}",
                )
        await self.registry.close_all()
        if self.launcher is not None and outcome.kind == "failed":
            self.launcher.stop_all()
        return outcome

    def _deploy(self, restore: LoadedSnapshot | None, plans: dict[tuple[str, int], SubtaskRestorePlan]) -> None:
        token = secrets.token_hex(16)
        addresses = [
            SlotAddress(slot=i, host=c.data_address[0], port=c.data_address[1]) for i, c in self.registry.slots.items()
        ]
        for index, conn in self.registry.slots.items():
            mine = {
                f"{v}/{i}": SubtaskRestore(
                    keyed=plan.keyed,
                    operator=plan.operator,
                    in_flight=plan.in_flight,
                    filter_in_flight_by_key=plan.filter_in_flight_by_key,
                )
                for (v, i), plan in plans.items()
                if i == index
            }
            conn.send(
                Deploy(
                    attempt=self.attempt,
                    job_id=self.job_id,
                    token=token,
                    config=self.config,
                    settings=self.plan.settings,
                    backend=self.plan.backend,
                    incremental=self.plan.incremental,
                    batch_size=self.plan.loaded.env.batch_size,
                    fingerprint=self.graph.fingerprint(),
                    slot_index=index,
                    slots=addresses,
                    checkpoints_uri=self.plan.checkpoints_uri,
                    savepoints_uri=self.plan.savepoints_uri,
                    restore_base=restore.base_uri if restore else None,
                    restore=mine,
                )
            )

    def _make_coordinator(self, first_id: int) -> CheckpointCoordinator:
        coordinator = CheckpointCoordinator.for_job(
            settings=self.plan.settings,
            storage=self._require_storage(),
            graph=self.graph,
            job={
                "job_id": self.job_id,
                "name": self.config.name,
                "namespace": self.config.namespace,
                "restored_from": self.restored_from,
            },
            gateway=self.registry,
            executor=self.executor,
            on_job_failure=self.fail,
            first_id=first_id,
            stats=self.stats,
        )
        coordinator.completed_listeners.append(self._on_completed)
        coordinator.failed_listeners.append(self._on_failed)
        return coordinator

    # -- events from the coordinator -------------------------------------------------------------
    def _on_completed(self, pending: CompletedCheckpoint, location: str) -> None:
        rec = self.stats.history[0] if self.stats.history else None
        self.events(
            "savepoint" if pending.is_savepoint else "checkpoint",
            {
                "id": pending.id,
                "location": location,
                "duration_ms": rec.duration_ms if rec else 0,
                "size": rec.size if rec else 0,
                "incremental_size": rec.incremental_size if rec else None,
                "records": self.records_in_total(),
            },
        )
        if pending.request_id and pending.request_id in self.savepoints:
            request = self.savepoints[pending.request_id]
            request.status, request.location = SavepointStatus.COMPLETED, location.rsplit("/_metadata", 1)[0]
        if pending.stop or (self._final_checkpoint is not None and pending.id >= self._final_checkpoint):
            self.registry.broadcast(Finish())

    def _on_failed(self, pending: PendingCheckpoint, reason: str) -> None:
        self.events("checkpoint_failed", {"id": pending.id, "reason": reason})
        if pending.request_id and pending.request_id in self.savepoints:
            request = self.savepoints[pending.request_id]
            request.status, request.reason = SavepointStatus.FAILED, reason
        if self._final_checkpoint == pending.id and self.coordinator is not None and not self.coordinator.stopped:
            self._final_checkpoint = self.coordinator.trigger().id

    def fail(self, reason: str, *, final: bool = False) -> None:
        """Ends the current attempt as failed (the restart strategy decides what next, unless ``final``)."""
        if self._outcome is not None and not self._outcome.done():
            log.info("job attempt %d failed: %s", self.attempt, reason)
            self._outcome.set_result(AttemptOutcome("failed", reason, final))

    # -- messages from slots ---------------------------------------------------------------------
    def on_slot_message(self, conn: SlotConnection, message: ToJobMaster) -> None:
        """Dispatches one control message from a registered slot."""
        coordinator = self.coordinator
        if isinstance(message, (Ack, EndOfInput)):
            # counts as of the barrier or the end of input: what the checkpoint line and the end report
            key = (message.vertex, message.subtask)
            bp = self.task_metrics[key].backpressured_s if key in self.task_metrics else 0.0
            self.task_metrics[key] = TaskMetrics(message.records_in, message.records_out, bp)
        if isinstance(message, Ack):
            if coordinator is not None:
                coordinator.receive_ack(
                    message.cp,
                    (message.vertex, message.subtask),
                    TaskAck(message.states, message.stats, message.positions),
                )
        elif isinstance(message, Decline):
            if coordinator is not None:
                coordinator.receive_decline(
                    message.cp, (message.vertex, message.subtask), message.reason, subsumed=message.subsumed
                )
        elif isinstance(message, (TaskFailed, SlotFailed)):
            where = (
                f"task {message.vertex} ({message.subtask + 1})"
                if isinstance(message, TaskFailed)
                else f"worker slot {conn.index}"
            )
            self._record_detail(where, message)
            final = final_failure(where, message.model_dump())
            if final is not None:  # a restart cannot mend it (see failures.py)
                self.exit_code = final.exit_code
                self.fail(final.reason, final=True)
            else:
                self.fail(f"{where} failed: {message.error}")
        elif isinstance(message, EndOfInput):
            self._ended_input.add((message.vertex, message.subtask))
            if (
                len(self._ended_input) == len(self.graph.subtasks())
                and self._final_checkpoint is None
                and coordinator is not None
                and not coordinator.stopped
            ):  # late: the attempt is ending
                log.info("all sources finished; taking a final checkpoint before finishing")
                self._final_checkpoint = coordinator.trigger().id
        elif isinstance(message, Prepared):
            self._prepared.add(conn.index)
            if len(self._prepared) == len(self.registry.slots):
                self._all_prepared.set()
        elif isinstance(message, SlotFinished):
            self._finished_slots.add(conn.index)
            if len(self._finished_slots) == len(self.registry.slots) and self._outcome and not self._outcome.done():
                self._outcome.set_result(AttemptOutcome("finished"))
        elif isinstance(message, Metrics):
            for t in message.tasks:
                self.task_metrics[(t.vertex, t.subtask)] = TaskMetrics(t.records_in, t.records_out, t.backpressured_s)

    def _record_detail(self, where: str, message: TaskFailed | SlotFailed) -> None:
        """Keeps the first failure of the attempt, structured, for ``GET /job`` (later ones are its echoes)."""
        if self.failure_detail is not None and self.failure_detail.attempt == self.attempt:
            return
        if isinstance(message, TaskFailed):
            exception, _, text = message.error.partition(": ")
            self.failure_detail = FailureDetail(
                exception=message.exception or exception,
                message=text if message.exception or text else message.error,
                task=where.removeprefix("task "),
                operator_uid=message.operator_uid,
                traceback=tuple(message.traceback),
                attempt=self.attempt,
            )
        else:
            self.failure_detail = FailureDetail(
                exception="SlotFailed", message=f"{where}: {message.error}", attempt=self.attempt
            )

    def on_slot_lost(self, conn: SlotConnection) -> None:
        """A slot's connection closed: fatal unless the job is ending."""
        if (
            self.state in (JobState.RUNNING, JobState.DEPLOYING, JobState.RECOVERING)
            and conn.index not in self._finished_slots
        ):
            self.fail(
                f"worker slot {conn.index} (pid {conn.pid}) was lost: its process exited or the connection dropped"
            )

    # -- user requests ----------------------------------------------------------------------------
    def trigger_checkpoint(self) -> int:
        """``POST /checkpoints``."""
        if self.coordinator is None or self.state is not JobState.RUNNING:
            raise ConfigError(f"the job is {self.state}; checkpoints can only be triggered while it is RUNNING")
        return self.coordinator.trigger().id

    def trigger_savepoint(self, target: str | None, stop: bool) -> SavepointRequest:
        """``POST /savepoints``: at most one savepoint at a time; a target must lie under an allowed root."""
        if target is not None:
            target = str(
                check_savepoint_target(
                    target, savepoint_roots(self.plan.savepoints_uri, self.config.allowed_savepoint_roots)
                )
            )
        if self.coordinator is None or self.state is not JobState.RUNNING:
            raise ConfigError(f"the job is {self.state}; savepoints can only be taken while it is RUNNING")
        if any(r.status is SavepointStatus.IN_PROGRESS for r in self.savepoints.values()):
            raise ConfigError("a savepoint is already in progress; wait for it (GET /savepoints/<id>)")
        directory = self._require_storage().new_savepoint_dir(target)
        request = SavepointRequest(uuid.uuid4().hex[:12], stop=stop, directory=directory)
        self.savepoints[request.id] = request

        def triggered(pending: PendingCheckpoint) -> None:
            request.checkpoint_id = pending.id

        def failed(reason: str) -> None:
            request.status, request.reason = SavepointStatus.FAILED, reason

        self.coordinator.request_savepoint(SavepointTrigger(directory, stop, request.id, triggered, failed))
        return request

    async def cancel(self) -> None:
        """``POST /cancel``: stops the job (checkpoints are deleted by ``run`` on DELETE_ON_CANCELLATION).

        Also between attempts: a job waiting out its restart delay (or whose attempt is failing) ends
        cancelled instead of starting the next attempt.
        """
        if self._cancel_requested is None:
            self._cancel_requested = asyncio.Event()
        self._cancel_requested.set()
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(AttemptOutcome("cancelled"))

    async def _cleanup_after_cancel(self) -> None:
        """Deletes the lineage's checkpoints once nothing can write to it any more."""
        if self.plan.settings.externalized_cleanup is not ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION:
            return
        await self._completions_written()
        await asyncio.get_running_loop().run_in_executor(self.executor, self._require_storage().delete_job_root)

    async def _completions_written(self) -> None:
        """Waits for the ended attempt's checkpoints whose ``_metadata`` was being written.

        Every task acknowledged them, so they complete after the attempt ended; the next attempt
        must restore the newest of them (and number its checkpoints after it), not the one before.
        """
        if self.coordinator is not None and self.coordinator.background:
            await asyncio.wait(self.coordinator.background, timeout=30)

    def records_in_total(self) -> int:
        """Records read by the sources so far in this attempt."""
        sources = {v.id for v in self.graph.vertices if v.is_source}
        return sum(m.records_in for (v, _), m in self.task_metrics.items() if v in sources)

    jobmaster_address = "127.0.0.1:0"
    """``HOST:PORT`` of the control port, where the slots register (set by whoever starts ``ControlServer``)."""

    def job_overview(self) -> JobOverview:
        """The body of ``GET /job``."""
        return JobOverview(
            id=self.job_id,
            name=self.config.name,
            namespace=self.config.namespace,
            state=self.state,
            parallelism=self.graph.slots,
            max_parallelism=self.graph.max_parallelism,
            start_time=self.start_time,
            restored_from=self.restored_from,
            attempt=self.attempt,
            restarts=self.restarts,
            failure=self.failure,
            failure_detail=self.failure_detail,
            vertices=tuple(VertexView(id=v.id, name=v.name, parallelism=v.parallelism) for v in self.graph.vertices),
            workers=tuple(
                WorkerView(slot=c.index, pid=c.pid, address=c.data_address) for c in self.registry.slots.values()
            ),
            records_in=self.records_in_total(),
            control_address=self.jobmaster_address,
            checkpoints_uri=self.plan.checkpoints_uri,
            savepoints_uri=self.plan.savepoints_uri,
        )


def _last_line(log_file: Path) -> str:
    """``'its last words: ...; '`` from a slot's log (the end of a traceback names the cause), or ''."""
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"its last words: {lines[-1].strip()[:300]}; " if lines else ""
