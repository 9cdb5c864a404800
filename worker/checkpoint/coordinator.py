"""The CheckpointCoordinator: wires the checkpoint lifecycle of one attempt of a job.

Lives in the JobMaster. It triggers barriers, hands acknowledgements to the ``PendingCheckpoint``,
and, once every task acknowledged, has it ``finalize`` (write ``_metadata``, last: its presence
marks completion) on the executor; then it notifies every task (``notify_checkpoint_complete``),
which is when transactional sinks commit, records the ``CompletedCheckpoint`` in the
``CompletedCheckpointStore`` (retention) and the stats, and tells the JobMaster's listeners. An
intermediate savepoint notifies no task (Flink >= 1.15): it is not a recovery point, so it must not
commit; its transactions stay pending and the next checkpoint commits them. Stop-with-savepoint
commits and ends the job. A timeout, a decline or a failed ``_metadata`` write aborts the pending
checkpoint; the ``CheckpointFailureManager`` decides when failures fail the job.

Every collaborator is injected (``CoordinatorParts``): the storage view, the gateway to the tasks,
the trigger decider, the failure manager, the completed-checkpoint store, the stats and the clock
(timeouts and periodic triggers are timers of the clock). ``for_job`` assembles the real ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from streamjob.worker.checkpoint.acks import TaskAck, TaskKey
from streamjob.worker.checkpoint.clock import Cancellable, CoordinatorClock, LoopClock
from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.decider import SavepointTrigger, TriggerDecider
from streamjob.worker.checkpoint.failures import CheckpointFailureManager, CheckpointFailureReason
from streamjob.worker.checkpoint.finalize import JobDescription
from streamjob.worker.checkpoint.pending import AckResult, PendingCheckpoint, PendingState
from streamjob.worker.checkpoint.stats import CheckpointRecord, CheckpointStats
from streamjob.worker.checkpoint.store import CompletedCheckpointStore
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.errors import CheckpointError
from streamjob.worker.graph.job_graph import JobGraph
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.storage.checkpoint_storage import CoordinatorStorageView

log = logging.getLogger(__name__)


class TaskGateway(Protocol):
    """How the coordinator reaches the tasks (the JobMaster's connections to the slots)."""

    def trigger(self, barrier: Barrier) -> None: ...

    def notify_complete(self, checkpoint_id: int) -> None: ...

    def notify_aborted(self, checkpoint_id: int) -> None: ...


@dataclass(frozen=True)
class CoordinatorParts:
    """What the coordinator wires together; the executor runs the blocking storage calls."""

    settings: CheckpointSettings
    job: JobDescription
    storage: CoordinatorStorageView
    gateway: TaskGateway
    decider: TriggerDecider
    failures: CheckpointFailureManager
    store: CompletedCheckpointStore
    stats: CheckpointStats
    clock: CoordinatorClock
    executor: Executor


class CheckpointCoordinator:
    """Runs periodic checkpoints and on-demand savepoints for one attempt of a job."""

    def __init__(self, parts: CoordinatorParts, *, first_id: int, on_job_failure: Callable[[str], None]) -> None:
        """``first_id``: the id of the first checkpoint; ``on_job_failure``: fails the attempt over."""
        self.parts = parts
        self.settings, self.storage, self.gateway = parts.settings, parts.storage, parts.gateway
        self.decider, self.failures, self.store = parts.decider, parts.failures, parts.store
        self.stats, self.clock, self.executor = parts.stats, parts.clock, parts.executor
        self.next_id = first_id
        self.on_job_failure = on_job_failure
        self.pending: dict[int, PendingCheckpoint] = {}
        self.completed_listeners: list[Callable[[CompletedCheckpoint, str], None]] = []
        self.failed_listeners: list[Callable[[PendingCheckpoint, str], None]] = []
        self.stopped = False
        self._tasks = frozenset(parts.job.graph.subtasks())
        self._started = False
        self._periodic: Cancellable | None = None
        self._timeouts: dict[int, Cancellable] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stopped_by_savepoint = False

    @classmethod
    def for_job(
        cls,
        *,
        settings: CheckpointSettings,
        storage: CoordinatorStorageView,
        graph: JobGraph,
        job: dict[str, Any],
        gateway: TaskGateway,
        executor: Executor,
        on_job_failure: Callable[[str], None],
        first_id: int,
        stats: CheckpointStats,
    ) -> CheckpointCoordinator:
        """The coordinator with the real collaborators (``job``: job_id, name, namespace, restored_from)."""
        description = JobDescription(
            graph, job["job_id"], job["name"], job["namespace"], settings.mode, job.get("restored_from")
        )
        store = CompletedCheckpointStore(retained=settings.retained, storage=storage, executor=executor)
        decider, failures = TriggerDecider(settings), CheckpointFailureManager(settings.tolerable_failures)
        parts = CoordinatorParts(
            settings, description, storage, gateway, decider, failures, store, stats, LoopClock(), executor
        )
        return cls(parts, first_id=first_id, on_job_failure=on_job_failure)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Starts periodic triggering (if an interval is set): the first one interval from now."""
        self._started = True
        if self.settings.interval_ms is not None:
            self.decider.triggered(self.clock.monotonic())
        self._changed()

    def stop(self, reason: CheckpointFailureReason = CheckpointFailureReason.JOB_STOPPING) -> None:
        """Stops triggering and aborts what is in progress, quietly (the tasks are going away).

        A checkpoint every task acknowledged is left to finish: it is complete and valid even
        though this attempt ends (``PendingCheckpoint.abort`` refuses it).
        """
        self.stopped = True
        for pending in list(self.pending.values()):
            self._abort(pending, reason, notify=False)
        for request in self.decider.drop_queued():
            request.on_failed(reason.value)
        self._changed()

    @property
    def background(self) -> set[asyncio.Task[None]]:
        """Completions still writing ``_metadata`` (awaited before deleting a cancelled job's storage)."""
        return self._background

    def _changed(self) -> None:
        """After any trigger, completion or abort: start a queued savepoint, or time the next checkpoint."""
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None
        if self.stopped or (not self._started and not self.decider.queued):
            return
        request = self.decider.next_savepoint(len(self.pending))
        if request is not None:
            pending = self.trigger(savepoint_dir=request.directory, stop=request.stop, request_id=request.request_id)
            request.on_triggered(pending)
            return  # trigger() timed the next checkpoint
        if self._stopped_by_savepoint or not self._started or any(p.stop for p in self.pending.values()):
            return
        delay = self.decider.delay(self.clock.monotonic(), len(self.pending))
        if delay is not None:
            self._periodic = self.clock.call_later(delay, self._trigger_periodic)

    def _trigger_periodic(self) -> None:
        self._periodic = None
        if not self.stopped:
            self.trigger()

    def request_savepoint(self, request: SavepointTrigger) -> None:
        """Triggers a savepoint now, or as soon as the checkpoints in progress have ended.

        A savepoint and a periodic checkpoint never run at the same time: with aligned barriers
        the newer would cancel the older at the tasks (Flink's request decider queues it too).
        """
        if self.stopped:
            raise CheckpointError("the job is not running; no savepoint can be taken")
        self.decider.queued.append(request)
        self._changed()

    # -- triggering -------------------------------------------------------------------------------
    def trigger(
        self, *, savepoint_dir: str | None = None, stop: bool = False, request_id: str | None = None
    ) -> PendingCheckpoint:
        """Starts a checkpoint (or a savepoint into ``savepoint_dir``) by sending barriers to the sources."""
        if self.stopped:
            raise CheckpointError("the job is not running; no checkpoint can be taken")
        cid, now = self.next_id, self.clock.monotonic()
        self.next_id += 1
        # Unaligned from the start only without an aligned timeout; with one, the tasks switch a slow
        # alignment (Flink's aligned-checkpoint-timeout). Savepoints are always aligned.
        unaligned = self.settings.unaligned_from_start and savepoint_dir is None
        pending = PendingCheckpoint(
            cid, self.clock.now_ms(), now, self._tasks, savepoint_dir, stop, unaligned, request_id
        )
        self.pending[cid] = pending
        if savepoint_dir is None:
            self.decider.triggered(now)
        self._timeouts[cid] = self.clock.call_later(self.settings.timeout_ms / 1000, lambda: self._expire(cid))
        log.info("triggering %s %d", pending.kind.value, cid)
        self.gateway.trigger(Barrier(cid, pending.trigger_ms, savepoint_dir, stop, unaligned))
        self._changed()
        return pending

    def _expire(self, checkpoint_id: int) -> None:
        pending = self.pending.get(checkpoint_id)
        if pending is not None and pending.state is PendingState.IN_PROGRESS:
            log.warning("checkpoint %d expired; waiting for %s", checkpoint_id, pending.missing()[:5])
            self._abort(pending, CheckpointFailureReason.TIMEOUT)

    # -- acknowledgements and completion ---------------------------------------------------------
    def receive_ack(self, checkpoint_id: int, task: TaskKey, ack: TaskAck) -> AckResult:
        """A task's snapshot arrived; the last one starts the completion."""
        pending = self.pending.get(checkpoint_id)
        if pending is None:
            return AckResult.UNKNOWN
        result = pending.acknowledge(task, ack)
        if result is AckResult.SUCCESS and pending.fully_acknowledged:
            self._spawn(self._complete(pending))
        return result

    def receive_decline(self, checkpoint_id: int, task: TaskKey, reason: str, *, subsumed: bool = False) -> None:
        """A task could not snapshot (or a newer barrier overtook it): the checkpoint fails.

        A subsumed checkpoint does not count towards the tolerable failure number (as in Flink).
        """
        pending = self.pending.get(checkpoint_id)
        if pending is not None and pending.state is PendingState.IN_PROGRESS:
            log.warning("checkpoint %d declined by %s/%d: %s", checkpoint_id, task[0], task[1], reason)
            why = CheckpointFailureReason.SUBSUMED if subsumed else CheckpointFailureReason.DECLINED
            self._abort(pending, why, detail=reason)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _complete(self, pending: PendingCheckpoint) -> None:
        run = asyncio.get_running_loop().run_in_executor
        try:
            latest = self.store.latest
            referenced = latest.shared_files if latest is not None else frozenset()
            completed = await run(
                self.executor, pending.finalize, self.parts.job, self.storage, self.clock.now_ms(), referenced
            )
        except Exception as err:
            self._abort(pending, CheckpointFailureReason.STORAGE, detail=str(err))
            return
        self._end(pending)
        self.failures.on_success()
        if completed.stop:
            self._stopped_by_savepoint = True  # the job stops now: no further periodic checkpoints
        if not completed.is_savepoint:
            self.decider.finished(self.clock.monotonic())
        self.stats.record(CheckpointRecord.of_completed(completed))
        log.info(
            "completed %s %d (%d bytes, %s written, %d ms) at %s",
            completed.kind.value,
            completed.id,
            completed.size,
            completed.incremental_size,
            completed.duration_ms,
            completed.location,
        )
        if completed.commits_side_effects:
            self.gateway.notify_complete(completed.id)
        if not completed.is_savepoint:
            for older in [p for c, p in self.pending.items() if c < completed.id and not p.is_savepoint]:
                self._abort(older, CheckpointFailureReason.SUBSUMED)
        for listener in self.completed_listeners:
            listener(completed, completed.location)
        self._changed()
        self.store.add(completed)

    # -- aborts ------------------------------------------------------------------------------------
    def _end(self, pending: PendingCheckpoint) -> None:
        del self.pending[pending.id]
        timer = self._timeouts.pop(pending.id, None)
        if timer is not None:
            timer.cancel()

    def _abort(
        self,
        pending: PendingCheckpoint,
        reason: CheckpointFailureReason,
        *,
        detail: str | None = None,
        notify: bool = True,
    ) -> None:
        failure = pending.abort(reason, detail)
        if failure is None:
            return  # every task acknowledged it: its completion goes on
        self._end(pending)
        duration_ms = int((self.clock.monotonic() - pending.started_monotonic) * 1000)
        self.stats.record(CheckpointRecord.of_failure(failure, duration_ms))
        if not failure.is_savepoint:
            self.decider.finished(self.clock.monotonic())
        if notify:
            self.gateway.notify_aborted(pending.id)
        for listener in self.failed_listeners:
            listener(pending, failure.message)
        self.executor.submit(self._discard, pending)
        self._changed()
        job_failure = self.failures.job_failure(failure) if notify else None
        if job_failure is not None:
            self.on_job_failure(job_failure)

    def _discard(self, pending: PendingCheckpoint) -> None:
        try:
            self.storage.discard(pending.id, savepoint_dir=pending.savepoint_dir)
        except Exception as err:
            log.debug("could not discard checkpoint %d: %s", pending.id, err)
