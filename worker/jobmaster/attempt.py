"""One attempt of a job: register the slots, deploy in two phases, run the checkpoints, and end with an outcome.

``jobmaster.JobMaster`` creates an ``Attempt`` per try and awaits ``run``; the attempt answers with
an ``AttemptOutcome`` whose ``OutcomeKind`` tells the restart loop what next. Its phases
(``AttemptPhase``): REGISTERING (the slots start and register; the restore plan and the first
checkpoint id are worked out meanwhile), DEPLOYING (every slot prepares its tasks, then the
deployment waits out the rest of an operator's restart backoff), RUNNING (``start`` sent, the
attempt's ``CheckpointCoordinator`` runs), ENDED. Whatever ends it first — a slot's message, a lost
slot, a timeout, a cancel — sets the outcome once (``end``); ``run`` then stops the coordinator and,
when the attempt failed in a way a restart may mend, releases the slots (they stop their tasks and
stay registered for the next attempt: Flink's failover without a new JobMaster); otherwise it says
goodbye to the slots and closes their connections.

The slots' control messages arrive through ``on_message`` (from ``control.py`` via the JobMaster),
one handler per message class of ``protocol/messages.py`` (``_handlers``), and ``on_slot_lost``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from streamjob.worker.checkpoint.acks import TaskAck
from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator
from streamjob.worker.checkpoint.failures import CheckpointFailureReason
from streamjob.worker.checkpoint.restore import SubtaskRestorePlan, plan_restore
from streamjob.worker.checkpoint.stats import CheckpointStats
from streamjob.worker.errors import StreamJobError
from streamjob.worker.failures import final_at_start, final_failure
from streamjob.worker.jobmaster.deployment import DeploySpec, deploy_messages
from streamjob.worker.jobmaster.launcher import Launcher
from streamjob.worker.jobmaster.plan import JobPlan
from streamjob.worker.jobmaster.savepoints import SavepointTracker
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.protocol.messages import (
    Ack,
    Cancel,
    Decline,
    EndOfInput,
    Finish,
    Metrics,
    Prepared,
    Register,
    Released,
    SlotFailed,
    SlotFinished,
    Start,
    TaskFailed,
    ToJobMaster,
    UserMetric,
)
from streamjob.worker.protocol.rest import FailureDetail
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage
from streamjob.worker.storage.snapshots import LoadedSnapshot

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
"""``(kind, data)``: what the JobMaster reports to whoever started it (``running``, ``checkpoint``, ...)."""


class OutcomeKind(enum.Enum):
    """How an attempt ended."""

    FINISHED = "finished"
    """Every task ended its input and the final checkpoint completed."""
    STOPPED_WITH_SAVEPOINT = "stopped_with_savepoint"
    """A stop-with-savepoint completed and every task ended: the job finished."""
    CANCELLED = "cancelled"
    RESCALED = "rescaled"
    """A rescale's stop-with-savepoint completed and every task ended: the slots stay for the next attempt."""
    FAILED = "failed"
    """The restart strategy decides whether another attempt runs."""
    FAILED_FINAL = "failed_final"
    """No restart can mend it (a corrupt or incompatible restore point, a job the slots cannot load)."""

    @property
    def failed(self) -> bool:
        """FAILED or FAILED_FINAL."""
        return self in (OutcomeKind.FAILED, OutcomeKind.FAILED_FINAL)

    @property
    def goodbye(self) -> Literal["finished", "cancelled", "failed"]:
        """What the slots are told (``Bye.outcome``)."""
        if self.failed:
            return "failed"
        return "cancelled" if self is OutcomeKind.CANCELLED else "finished"


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, why, and (final failures) the exit code the job ends with."""

    kind: OutcomeKind
    reason: str | None = None
    exit_code: int = 0

    @property
    def final(self) -> bool:
        """A failure no restart can mend: the job fails at once (and the operator must not restart it)."""
        return self.kind is OutcomeKind.FAILED_FINAL


class AttemptPhase(enum.Enum):
    """Where an attempt is (see the module docstring)."""

    REGISTERING = "registering"
    DEPLOYING = "deploying"
    RUNNING = "running"
    ENDED = "ended"


@dataclass
class TaskMetrics:
    """Counters a slot reported for one task."""

    records_in: int = 0
    records_out: int = 0
    backpressured_s: float = 0.0
    user: list[UserMetric] = field(default_factory=list)  # the functions' metrics (``api/metrics.py``)


class CompletedRef(Protocol):
    """What the attempt reads of a checkpoint its coordinator completed or aborted."""

    @property
    def id(self) -> int: ...

    @property
    def is_savepoint(self) -> bool: ...

    @property
    def stop(self) -> bool: ...


@dataclass(frozen=True)
class AttemptContext:
    """What one attempt uses of its JobMaster: the plan, storage, slots, executor and reporting."""

    plan: JobPlan
    number: int
    """The attempt number (``Deploy.attempt``; the slots refuse peers of another)."""
    job_id: str
    storage: CheckpointStorage
    registry: SlotRegistry
    executor: Executor
    stats: CheckpointStats
    savepoints: SavepointTracker
    events: EventSink
    launcher: Launcher | None = None
    jobmaster_address: str = "127.0.0.1:0"
    next_checkpoint_id: int = 1
    """At least this id for the first checkpoint (ids used by earlier attempts are never reused)."""
    hold_deploy_until: float | None = None
    """``time.monotonic()``: no task is deployed before it (the rest of the operator's restart backoff)."""
    replace_slots: bool = False
    """The slots of the last attempt stay: the launcher only replaces those that exited."""


class Attempt:
    """One try at running the job, from the slots' registration to its outcome."""

    def __init__(self, ctx: AttemptContext) -> None:
        """Nothing starts before ``run``."""
        self.ctx = ctx
        self.graph = ctx.plan.graph
        self.phase = AttemptPhase.REGISTERING
        self.started = False
        """Whether the slots were told to ``start`` (the job ran; it stays True once the attempt ended)."""
        self.coordinator: CheckpointCoordinator | None = None
        self.task_metrics: dict[tuple[str, int], TaskMetrics] = {}
        self.restored_from: str | None = None
        self.failure_detail: FailureDetail | None = None
        """The attempt's first failure reported by a slot, structured (``GET /job``'s ``failure_detail``)."""
        self._outcome: asyncio.Future[AttemptOutcome] = asyncio.get_running_loop().create_future()
        self._prepared: set[int] = set()
        self._all_prepared = asyncio.Event()
        self._finished_slots: set[int] = set()
        self._deployed_slots: frozenset[int] = frozenset()
        """The slots this attempt was deployed to: it finished when each of them did (they exit once finished)."""
        self._ended_input: set[tuple[str, int]] = set()
        self._final_checkpoint: int | None = None
        self._stopped_by: int | None = None
        self.rescaling = False
        """The next stop-with-savepoint is a rescale's: the slots stay (``Finish.stay``) and the outcome is RESCALED."""
        self._handlers: dict[type[Any], Callable[[SlotConnection, Any], None]] = {
            Register: self._on_register,
            Prepared: self._on_prepared,
            Released: self._on_released,
            Ack: self._on_ack,
            Decline: self._on_decline,
            TaskFailed: self._on_failure,
            SlotFailed: self._on_failure,
            EndOfInput: self._on_end_of_input,
            SlotFinished: self._on_slot_finished,
            Metrics: self._on_metrics,
        }

    # -- ending ---------------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """Whether the outcome is set (the attempt may still be closing its slots)."""
        return self._outcome.done()

    @property
    def failed_final(self) -> bool:
        """The attempt ended in a failure no restart can mend (``OutcomeKind.FAILED_FINAL``)."""
        return self._outcome.done() and self._outcome.result().kind is OutcomeKind.FAILED_FINAL

    def end(self, outcome: AttemptOutcome) -> None:
        """Sets the outcome unless one is set: the first reason to end wins."""
        if not self._outcome.done():
            if outcome.kind.failed:
                log.info("job attempt %d failed: %s", self.ctx.number, outcome.reason)
            self._outcome.set_result(outcome)

    def fail(self, reason: str, *, final: bool = False, exit_code: int = 0) -> None:
        """Ends the attempt as failed (the restart strategy decides what next, unless ``final``)."""
        self.end(AttemptOutcome(OutcomeKind.FAILED_FINAL if final else OutcomeKind.FAILED, reason, exit_code))

    def cancel(self) -> None:
        """Ends the attempt as cancelled."""
        self.end(AttemptOutcome(OutcomeKind.CANCELLED))

    # -- the attempt ----------------------------------------------------------------------------------
    async def run(self, restore: LoadedSnapshot | None) -> AttemptOutcome:
        """Runs the attempt from ``restore`` (None: a fresh start) until it ends; returns how."""
        ctx = self.ctx
        slots = self.graph.slots
        if ctx.launcher is None and ctx.plan.config.total_slots < slots:
            self.phase = AttemptPhase.ENDED
            return AttemptOutcome(  # final: a restart in place would only wait for slots that never come
                OutcomeKind.FAILED_FINAL,
                f"the job needs {slots} slots (per slot sharing group its largest parallelism, summed over "
                f"the groups) but workers × slots per worker = {ctx.plan.config.total_slots}; raise "
                "spec.workers or spec.taskSlots (workers/slots_per_worker), or lower the parallelism",
            )
        ctx.registry.open_for(slots)
        if ctx.launcher is not None and ctx.replace_slots:
            ctx.launcher.replace_exited(ctx.jobmaster_address, ctx.number)
        elif ctx.launcher is not None:
            ctx.launcher.start(slots, ctx.jobmaster_address, ctx.number)
        try:
            return await self._end(await self._run(restore, slots))
        except asyncio.CancelledError:
            await self._end(AttemptOutcome(OutcomeKind.CANCELLED))
            raise

    async def _run(self, restore: LoadedSnapshot | None, slots: int) -> AttemptOutcome:
        ctx = self.ctx
        # The restore plan and the first checkpoint id need no slot: work them out while the slots start
        # and register, so that the deployment follows the last registration at once.
        at_least = (restore.metadata.checkpoint_id + 1) if restore and restore.metadata.job_id == ctx.job_id else 1
        at_least = max(at_least, ctx.next_checkpoint_id)
        first_id_lookup = asyncio.get_running_loop().run_in_executor(
            ctx.executor, lambda: ctx.storage.next_checkpoint_id(at_least=at_least)
        )
        # An attempt that ends before it deploys never awaits the lookup: retrieve its error anyway.
        first_id_lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            plans = self._restore_plans(restore)
        except StreamJobError as err:
            return AttemptOutcome(
                OutcomeKind.FAILED_FINAL if final_at_start(err) else OutcomeKind.FAILED, str(err), err.exit_code
            )
        if not await self._until_registered(slots):
            if self._outcome.done():  # cancelled, or a slot process failed, while the slots registered
                return self._outcome.result()
            return AttemptOutcome(
                OutcomeKind.FAILED,
                f"only {ctx.registry.ready} of {slots} worker slots registered within "
                f"{ctx.plan.config.worker_register_timeout_ms} ms",
            )
        self.phase = AttemptPhase.DEPLOYING
        self.restored_from = restore.metadata_uri if restore else None
        ctx.stats.restored_from = self.restored_from
        first_id = await first_id_lookup
        self._deploy(restore, plans)
        if not await self._until_prepared() or not await self._hold_deploy():
            return self._outcome.result()
        ctx.registry.broadcast(Start())
        self.coordinator = self._make_coordinator(first_id)
        self.phase, self.started = AttemptPhase.RUNNING, True
        ctx.events(
            "running",
            {
                "attempt": ctx.number,
                "restored_from": self.restored_from,
                "checkpoint": restore.metadata.checkpoint_id if restore else None,
                "kind": restore.metadata.kind if restore else None,
            },
        )
        self.coordinator.start()
        return await self._outcome

    def _restore_plans(self, restore: LoadedSnapshot | None) -> dict[tuple[str, int], SubtaskRestorePlan]:
        if restore is None:
            return {}
        settings = self.ctx.plan.settings
        return plan_restore(
            restore.metadata,
            self.graph,
            allow_non_restored_state=self.ctx.plan.config.allow_non_restored_state,
            ignore_in_flight=restore.metadata.checkpoint_id == settings.id_of_ignored_in_flight_data,
        )

    async def _end(self, outcome: AttemptOutcome) -> AttemptOutcome:
        """Stops the coordinator, tells the slots how the attempt ended and closes their connections."""
        self.end(outcome)  # an outcome found by ``run`` itself (a restore plan error, a timeout)
        ctx = self.ctx
        if self.coordinator is not None:
            finished = outcome.kind in (OutcomeKind.FINISHED, OutcomeKind.STOPPED_WITH_SAVEPOINT, OutcomeKind.RESCALED)
            self.coordinator.stop(
                CheckpointFailureReason.JOB_FINISHED if finished else CheckpointFailureReason.JOB_STOPPING
            )
        ctx.savepoints.fail_open(f"the job attempt ended: {outcome.reason or outcome.kind.goodbye}")
        if outcome.kind in (OutcomeKind.FAILED, OutcomeKind.RESCALED):
            # The slots stay for the next attempt; ``JobMaster`` lets them go if the strategy gives up.
            ctx.registry.release(ctx.number)
            self.phase = AttemptPhase.ENDED
            return outcome
        if outcome.kind is OutcomeKind.CANCELLED:
            ctx.registry.broadcast(Cancel())
            await asyncio.sleep(0.1)
        await ctx.registry.say_goodbye(outcome.kind.goodbye)
        await ctx.registry.close_all()
        if ctx.launcher is not None and outcome.kind.failed:
            ctx.launcher.stop_all()
        self.phase = AttemptPhase.ENDED
        return outcome

    async def _until_registered(self, slots: int) -> bool:
        """Waits until ``slots`` slots registered; False on timeout or when the attempt ended meanwhile.

        A cancel (Ctrl-C, ``POST /cancel``), a failure, or a local slot process that exits before it
        registered ends the wait at once instead of after the registration timeout.
        """
        ctx = self.ctx
        ended: asyncio.Future[Any] = self._outcome
        registered: asyncio.Future[Any] = asyncio.ensure_future(
            ctx.registry.wait_for_all(slots, ctx.plan.config.worker_register_timeout_ms / 1000)
        )
        try:
            while not registered.done() and not ended.done():
                await asyncio.wait(
                    {ended, registered},
                    timeout=0.25 if ctx.launcher is not None else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if ctx.launcher is not None and not registered.done():
                    self._check_slot_processes(ctx.launcher)
        finally:
            if not registered.done():
                registered.cancel()
        return not ended.done() and not registered.cancelled() and bool(registered.result())

    def _check_slot_processes(self, launcher: Launcher) -> None:
        """Fails the attempt when a local slot process ended before it registered (it cannot any more)."""
        for index, code, log_file in launcher.exited():
            self.fail(
                f"slot process {index} exited with code {code} before it registered with the JobMaster; "
                f"{_last_line(log_file)}see its log {log_file}"
            )
            return

    async def _until_prepared(self) -> bool:
        """Waits until every slot prepared its tasks (``prepared``); False if the attempt ended meanwhile.

        Only then are the slots told to ``start``: a slot connects to its peers' data servers, which
        accept the attempt's token once they are prepared. A slot that does not prepare in time fails
        the attempt.
        """
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._all_prepared.wait())
        timeout_ms = self.ctx.plan.config.worker_register_timeout_ms
        try:
            await asyncio.wait({self._outcome, waiter}, timeout=timeout_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self._all_prepared.is_set():
            self.fail(
                f"only {len(self._prepared)} of {len(self.ctx.registry.slots)} worker slots prepared their tasks "
                f"within {timeout_ms} ms"
            )
        return not self._outcome.done()

    async def _hold_deploy(self) -> bool:
        """Waits out the rest of the operator's restart backoff; False if the attempt ended meanwhile.

        The operator starts the pods of the next attempt before its backoff is over, so that the
        processes start while it runs out (``streamjob jobmaster --hold-deploy``); the slots prepare
        their tasks meanwhile (loading the job, reading the restore plan), but the tasks, and so the
        job's sources, sinks and checkpoints, run no sooner than the backoff allows.
        """
        until = self.ctx.hold_deploy_until
        delay = (until - time.monotonic()) if until is not None else 0.0
        if delay > 0:
            log.info("holding the deployment for %.2f s: the restart backoff is not over", delay)
            await asyncio.wait({self._outcome}, timeout=delay)
        return not self._outcome.done()

    def _deploy(self, restore: LoadedSnapshot | None, plans: dict[tuple[str, int], SubtaskRestorePlan]) -> None:
        ctx, plan = self.ctx, self.ctx.plan
        spec = DeploySpec(
            attempt=ctx.number,
            job_id=ctx.job_id,
            token=secrets.token_hex(16),
            config=plan.config,
            settings=plan.settings,
            backend=plan.backend,
            incremental=plan.incremental,
            batch_size=plan.loaded.env.batch_size,
            fingerprint=self.graph.fingerprint(),
            checkpoints_uri=plan.checkpoints_uri,
            savepoints_uri=plan.savepoints_uri,
            restore_base=restore.base_uri if restore else None,
        )
        addresses = {index: conn.data_address for index, conn in ctx.registry.slots.items()}
        self._deployed_slots = frozenset(addresses)
        for index, message in deploy_messages(spec, addresses, plans, self.graph.slot_of).items():
            ctx.registry.slots[index].send(message)

    def _make_coordinator(self, first_id: int) -> CheckpointCoordinator:
        ctx = self.ctx
        coordinator = CheckpointCoordinator.for_job(
            settings=ctx.plan.settings,
            storage=ctx.storage,
            graph=self.graph,
            job={
                "job_id": ctx.job_id,
                "name": ctx.plan.config.name,
                "namespace": ctx.plan.config.namespace,
                "restored_from": self.restored_from,
            },
            gateway=ctx.registry,
            executor=ctx.executor,
            on_job_failure=self.fail,
            first_id=first_id,
            stats=ctx.stats,
        )
        ctx.savepoints.attach(coordinator)
        coordinator.completed_listeners.append(self._on_completed)
        coordinator.failed_listeners.append(self._on_checkpoint_failed)
        return coordinator

    # -- the coordinator's reports ---------------------------------------------------------------------
    def _on_completed(self, checkpoint: CompletedRef, location: str) -> None:
        stats = self.ctx.stats
        rec = stats.history[0] if stats.history else None
        self.ctx.events(
            "savepoint" if checkpoint.is_savepoint else "checkpoint",
            {
                "id": checkpoint.id,
                "location": location,
                "duration_ms": rec.duration_ms if rec else 0,
                "size": rec.size if rec else 0,
                "incremental_size": rec.incremental_size if rec else None,
                "records": self.records_in_total(),
            },
        )
        if checkpoint.stop:
            self._stopped_by = checkpoint.id
        if checkpoint.stop or (self._final_checkpoint is not None and checkpoint.id >= self._final_checkpoint):
            self.ctx.registry.broadcast(Finish(stay=checkpoint.stop and self.rescaling))

    def _on_checkpoint_failed(self, checkpoint: CompletedRef, reason: str) -> None:
        self.ctx.events("checkpoint_failed", {"id": checkpoint.id, "reason": reason})
        if checkpoint.stop:
            self.rescaling = False  # the tasks resume: a later stop-with-savepoint is not the rescale's
        coordinator = self.coordinator
        if self._final_checkpoint == checkpoint.id and coordinator is not None and not coordinator.stopped:
            self._final_checkpoint = coordinator.trigger().id

    # -- the slots' messages ---------------------------------------------------------------------------
    def on_message(self, conn: SlotConnection, message: ToJobMaster) -> None:
        """Hands one control message of a registered slot to its handler."""
        self._handlers[type(message)](conn, message)

    def on_slot_lost(self, conn: SlotConnection) -> None:
        """A slot's connection closed: fatal unless the attempt is ending or the slot finished."""
        if conn.index not in self._finished_slots:
            self.fail(
                f"worker slot {conn.index} (pid {conn.pid}) was lost: its process exited or the connection dropped"
            )

    def _on_register(self, conn: SlotConnection, message: Register) -> None:
        log.warning("worker slot %d registered again (pid %d); ignored", conn.index, message.pid)

    def _on_released(self, conn: SlotConnection, message: Released) -> None:
        log.debug("worker slot %d was released from attempt %d again; ignored", conn.index, message.attempt)

    def _on_prepared(self, conn: SlotConnection, message: Prepared) -> None:
        self._prepared.add(conn.index)
        if len(self._prepared) == len(self.ctx.registry.slots):
            self._all_prepared.set()

    def _count(self, vertex: str, subtask: int, records_in: int, records_out: int) -> None:
        """Counts as of a barrier or the end of input: what the checkpoint line and the end report."""
        previous = self.task_metrics.get((vertex, subtask))
        backpressured = previous.backpressured_s if previous else 0.0
        user = previous.user if previous else []
        self.task_metrics[(vertex, subtask)] = TaskMetrics(records_in, records_out, backpressured, user)

    def _on_ack(self, conn: SlotConnection, message: Ack) -> None:
        self._count(message.vertex, message.subtask, message.records_in, message.records_out)
        if self.coordinator is not None:
            self.coordinator.receive_ack(
                message.cp, (message.vertex, message.subtask), TaskAck(message.states, message.stats, message.positions)
            )

    def _on_decline(self, conn: SlotConnection, message: Decline) -> None:
        if self.coordinator is not None:
            self.coordinator.receive_decline(
                message.cp, (message.vertex, message.subtask), message.reason, subsumed=message.subsumed
            )

    def _on_failure(self, conn: SlotConnection, message: TaskFailed | SlotFailed) -> None:
        if isinstance(message, TaskFailed):
            where = f"task {message.vertex} ({message.subtask + 1})"
        else:
            where = f"worker slot {conn.index}"
        if self.failure_detail is None:  # later failures are its echoes
            self.failure_detail = _failure_detail(where, message, self.ctx.number)
        final = final_failure(where, message.model_dump())
        if final is not None:  # a restart cannot mend it (see failures.py)
            self.fail(final.reason, final=True, exit_code=final.exit_code)
        else:
            self.fail(f"{where} failed: {message.error}")

    def _on_end_of_input(self, conn: SlotConnection, message: EndOfInput) -> None:
        self._count(message.vertex, message.subtask, message.records_in, message.records_out)
        self._ended_input.add((message.vertex, message.subtask))
        coordinator = self.coordinator
        if (
            len(self._ended_input) == len(self.graph.subtasks())
            and self._final_checkpoint is None
            and coordinator is not None
            and not coordinator.stopped  # late: the attempt is ending
        ):
            log.info("all sources finished; taking a final checkpoint before finishing")
            self._final_checkpoint = coordinator.trigger().id

    def _on_slot_finished(self, conn: SlotConnection, message: SlotFinished) -> None:
        self._finished_slots.add(conn.index)
        # Against the deployed slots, not the registry: a slot that finished first has exited and left it by now.
        if self._finished_slots >= self._deployed_slots:
            if self._stopped_by is None:
                self.end(AttemptOutcome(OutcomeKind.FINISHED))
            else:
                kind = OutcomeKind.RESCALED if self.rescaling else OutcomeKind.STOPPED_WITH_SAVEPOINT
                self.end(AttemptOutcome(kind))

    def _on_metrics(self, conn: SlotConnection, message: Metrics) -> None:
        for t in message.tasks:
            metrics = TaskMetrics(t.records_in, t.records_out, t.backpressured_s, t.user)
            self.task_metrics[(t.vertex, t.subtask)] = metrics

    # -- progress -------------------------------------------------------------------------------------
    def records_in_total(self) -> int:
        """Records read by the sources so far in this attempt."""
        sources = {v.id for v in self.graph.vertices if v.is_source}
        return sum(m.records_in for (v, _), m in self.task_metrics.items() if v in sources)


def _failure_detail(where: str, message: TaskFailed | SlotFailed, attempt: int) -> FailureDetail:
    """The root cause a slot reported: what raised, in which task and operator, the traceback's end."""
    if isinstance(message, SlotFailed):
        return FailureDetail(exception="SlotFailed", message=f"{where}: {message.error}", attempt=attempt)
    exception, _, text = message.error.partition(": ")
    return FailureDetail(
        exception=message.exception or exception,
        message=text if message.exception or text else message.error,
        task=where.removeprefix("task "),
        operator_uid=message.operator_uid,
        traceback=tuple(message.traceback),
        attempt=attempt,
    )


def _last_line(log_file: Path) -> str:
    """``'its last words: ...; '`` from a slot's log (the end of a traceback names the cause), or ''."""
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"its last words: {lines[-1].strip()[:300]}; " if lines else ""
