"""The CheckpointCoordinator: triggers barriers, collects acknowledgements, completes checkpoints.

Lives in the JobMaster. Completion is the second phase of a two-phase commit: when every task
has acknowledged checkpoint n, ``_metadata`` is written (last — its presence marks completion),
then every task is notified (``notify_checkpoint_complete``), which is when transactional sinks
commit. An intermediate savepoint notifies no task (Flink >= 1.15): it is not a recovery point,
so it must not commit; its transactions stay pending and the next checkpoint commits them
(``PendingCheckpoint.commits_side_effects``). Stop-with-savepoint commits and ends the job.
The collaborators are injected: storage, the gateway to the tasks, the trigger decider,
the failure manager, the stats and the clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from streamjob.worker.checkpoint.decider import TriggerDecider
from streamjob.worker.checkpoint.failures import CheckpointFailureManager, CheckpointFailureReason
from streamjob.worker.checkpoint.pending import AckResult, PendingCheckpoint, TaskAck, TaskKey
from streamjob.worker.checkpoint.stats import CheckpointRecord, CheckpointStats
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.errors import CheckpointError
from streamjob.worker.graph.job_graph import JobGraph
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot
from streamjob.worker.storage.checkpoint_storage import CoordinatorStorageView

log = logging.getLogger(__name__)


class TaskGateway(Protocol):
    """How the coordinator reaches the tasks (the JobMaster's connections to the slots)."""

    def trigger(self, barrier: Barrier) -> None: ...

    def notify_complete(self, checkpoint_id: int) -> None: ...

    def notify_aborted(self, checkpoint_id: int) -> None: ...


@dataclass
class SavepointTrigger:
    """A savepoint waiting to be triggered, and whom to tell what became of it."""

    directory: str
    stop: bool
    request_id: str
    on_triggered: Callable[[PendingCheckpoint], None]
    on_failed: Callable[[str], None]


class CheckpointCoordinator:
    """Runs periodic checkpoints and on-demand savepoints for one attempt of a job."""

    def __init__(
        self,
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.graph = graph
        self.job = job
        self.gateway = gateway
        self.executor = executor
        self.on_job_failure = on_job_failure
        self.clock = clock
        self.next_id = first_id
        self.stats = stats
        self.decider = TriggerDecider(settings)
        self.failures = CheckpointFailureManager(settings.tolerable_failures)
        self.pending: dict[int, PendingCheckpoint] = {}
        self.completed_listeners: list[Callable[[PendingCheckpoint, str], None]] = []
        self.failed_listeners: list[Callable[[PendingCheckpoint, str], None]] = []
        self._tasks = frozenset(graph.subtasks())
        self._periodic: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._timeouts: dict[int, asyncio.TimerHandle] = {}
        self.stopped = False
        self._background: set[asyncio.Task[None]] = set()
        self._queued: list[SavepointTrigger] = []
        self._stopped_by_savepoint = False
        self._retention: asyncio.Future[None] | None = None
        self._retention_again = False
        self.last_completed_location: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Starts periodic triggering (if an interval is set)."""
        if self.settings.interval_ms is not None:
            self.decider.triggered(self.clock())
            self._periodic = asyncio.create_task(self._run_periodic())

    def stop(self, reason: CheckpointFailureReason = CheckpointFailureReason.JOB_STOPPING) -> None:
        """Stops triggering and aborts what is in progress.

        A checkpoint whose ``_metadata`` is being written is left to finish: every task already
        acknowledged it, so it is complete and valid even though this attempt ends.
        """
        self.stopped = True
        if self._periodic is not None:
            self._periodic.cancel()
        for cid in list(self.pending):
            self._abort(cid, reason, notify=False)
        for request in self._queued:
            request.on_failed(f"{reason.value}")
        self._queued = []

    async def _run_periodic(self) -> None:
        while not self.stopped:
            stopping = self._queued or self._stopped_by_savepoint or any(p.stop for p in self.pending.values())
            delay = None if stopping else self.decider.delay(self.clock(), len(self.pending))
            self._wake.clear()
            if delay is None:
                await self._wake.wait()
                continue
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                except TimeoutError:
                    pass
            if not self.stopped:
                self.trigger()

    @property
    def background(self) -> set[asyncio.Task[None]]:
        """Completions still writing ``_metadata`` (awaited before deleting a cancelled job's storage)."""
        return self._background

    def _periodic_pending(self) -> list[PendingCheckpoint]:
        return [p for p in self.pending.values() if not p.is_savepoint]

    def request_savepoint(self, request: SavepointTrigger) -> None:
        """Triggers a savepoint now, or as soon as the checkpoints in progress have ended.

        A savepoint and a periodic checkpoint never run at the same time: with aligned barriers
        the newer would cancel the older at the tasks (Flink's request decider queues it too).
        """
        if self.stopped:
            raise CheckpointError("the job is not running; no savepoint can be taken")
        self._queued.append(request)
        self._drain_queue()

    def _drain_queue(self) -> None:
        if self._queued and not self.pending and not self.stopped:
            request = self._queued.pop(0)
            request.on_triggered(
                self.trigger(savepoint_dir=request.directory, stop=request.stop, request_id=request.request_id)
            )

    # -- triggering -------------------------------------------------------------------------------
    def trigger(
        self, *, savepoint_dir: str | None = None, stop: bool = False, request_id: str | None = None
    ) -> PendingCheckpoint:
        """Starts a checkpoint (or a savepoint into ``savepoint_dir``) by sending barriers to the sources."""
        if self.stopped:
            raise CheckpointError("the job is not running; no checkpoint can be taken")
        cid = self.next_id
        self.next_id += 1
        now = self.clock()
        unaligned = (self.settings.unaligned or self.settings.force_unaligned) and savepoint_dir is None
        pending = PendingCheckpoint(
            cid, int(time.time() * 1000), now, self._tasks, savepoint_dir, stop, unaligned, request_id
        )
        self.pending[cid] = pending
        if savepoint_dir is None:
            self.decider.triggered(now)
        loop = asyncio.get_running_loop()
        self._timeouts[cid] = loop.call_later(self.settings.timeout_ms / 1000, self._expire, cid)
        log.info("triggering %s %d", "savepoint" if savepoint_dir else "checkpoint", cid)
        self.gateway.trigger(Barrier(cid, pending.trigger_ms, savepoint_dir, stop, unaligned))
        return pending

    def _expire(self, checkpoint_id: int) -> None:
        if checkpoint_id in self.pending and not self.pending[checkpoint_id].finalizing:
            missing = self.pending[checkpoint_id].missing()
            log.warning("checkpoint %d expired; waiting for %s", checkpoint_id, missing[:5])
            self._abort(checkpoint_id, CheckpointFailureReason.TIMEOUT)

    # -- acknowledgements ------------------------------------------------------------------------
    def receive_ack(self, checkpoint_id: int, task: TaskKey, ack: TaskAck) -> AckResult:
        """A task's snapshot arrived; completes the checkpoint when it is the last."""
        pending = self.pending.get(checkpoint_id)
        if pending is None:
            return AckResult.UNKNOWN
        result = pending.acknowledge(task, ack)
        if result is AckResult.SUCCESS and pending.complete:
            # Finalizing from this moment, not from when the task first runs: a stop, decline or
            # timeout in between would otherwise discard the files that the completion's
            # ``_metadata`` then references (a completed checkpoint with missing state).
            pending.finalizing = True
            task_ = asyncio.create_task(self._complete(pending))
            self._background.add(task_)
            task_.add_done_callback(self._background.discard)
        return result

    def receive_decline(self, checkpoint_id: int, task: TaskKey, reason: str, *, subsumed: bool = False) -> None:
        """A task could not snapshot (or a newer barrier overtook it): the checkpoint fails.

        A subsumed checkpoint does not count towards the tolerable failure number (as in Flink).
        """
        if checkpoint_id in self.pending and not self.pending[checkpoint_id].finalizing:
            log.warning("checkpoint %d declined by %s/%d: %s", checkpoint_id, task[0], task[1], reason)
            why = CheckpointFailureReason.SUBSUMED if subsumed else CheckpointFailureReason.DECLINED
            self._abort(checkpoint_id, why, detail=reason)

    async def _complete(self, pending: PendingCheckpoint) -> None:
        meta = self._metadata(pending)
        loop = asyncio.get_running_loop()
        try:
            location = await loop.run_in_executor(self.executor, self._write_metadata, meta, pending.savepoint_dir)
        except Exception as err:
            pending.finalizing = False
            self._abort(pending.id, CheckpointFailureReason.STORAGE, detail=str(err))
            return
        if self.pending.pop(pending.id, None) is None:
            return
        timer = self._timeouts.pop(pending.id, None)
        if timer is not None:
            timer.cancel()
        self.failures.on_success()
        if pending.stop:
            self._stopped_by_savepoint = True  # the job stops now: no further periodic checkpoints
        if not pending.is_savepoint:
            self.decider.finished(self.clock())
            self.last_completed_location = location
        stats = _aggregate_stats(pending)
        self.stats.record(
            CheckpointRecord(
                pending.id,
                "savepoint" if pending.is_savepoint else "checkpoint",
                "COMPLETED",
                pending.trigger_ms,
                meta.duration_ms,
                meta.total_size,
                location,
                None,
                stats["alignment_ms"],
                stats["sync_ms"],
                stats["async_ms"],
                stats["cpu_ms"],
            )
        )
        log.info(
            "completed %s %d (%d bytes, %d ms) at %s",
            meta.kind,
            pending.id,
            meta.total_size,
            meta.duration_ms,
            location,
        )
        if pending.commits_side_effects:
            self.gateway.notify_complete(pending.id)
        if not pending.is_savepoint:
            for older in [
                c for c, p in self.pending.items() if c < pending.id and not p.is_savepoint and not p.finalizing
            ]:
                self._abort(older, CheckpointFailureReason.SUBSUMED)
        for listener in self.completed_listeners:
            listener(pending, location)
        self._wake.set()
        self._drain_queue()
        if not pending.is_savepoint:
            self._schedule_retention()

    def _write_metadata(self, meta: CheckpointMetadata, savepoint_dir: str | None) -> str:
        return self.storage.write_metadata(meta, savepoint_dir=savepoint_dir)

    def _schedule_retention(self) -> None:
        """One retention run at a time; completions during a run coalesce into one more run."""
        if self._retention is not None and not self._retention.done():
            self._retention_again = True
            return
        self._retention_again = False
        self._retention = asyncio.get_running_loop().run_in_executor(self.executor, self._retain)
        self._retention.add_done_callback(self._retention_done)

    def _retention_done(self, _: object) -> None:
        if self._retention_again and not self.stopped:
            self._schedule_retention()

    def _retain(self) -> None:
        try:
            self.storage.apply_retention(self.settings.retained)
        except Exception as err:
            log.warning("retention of old checkpoints failed (retried after the next checkpoint): %s", err)

    def _metadata(self, pending: PendingCheckpoint) -> CheckpointMetadata:
        operators: dict[str, OperatorSnapshot] = {}
        positions: dict[str, list[Any]] = {}
        for vertex in self.graph.vertices:
            for op in vertex.operators:
                uid = op.effective_uid()
                subtasks = []
                for i in range(vertex.parallelism):
                    ack = pending.acks[(vertex.id, i)]
                    s = ack.states.get(uid, {})
                    subtasks.append(
                        SubtaskSnapshot(
                            subtask_index=i,
                            keyed=s.get("keyed", []),
                            operator=s.get("operator", []),
                            channel=s.get("channel", []),
                        )
                    )
                    if op is vertex.head and vertex.is_source:
                        positions.setdefault(uid, []).append(ack.positions)
                operators[uid] = OperatorSnapshot(
                    uid=uid,
                    name=op.name,
                    parallelism=vertex.parallelism,
                    max_parallelism=vertex.max_parallelism,
                    subtasks=subtasks,
                )
        handles: list[StateHandle] = [
            h for o in operators.values() for s in o.subtasks for h in (*s.keyed, *s.operator, *s.channel)
        ]
        now = int(time.time() * 1000)
        return CheckpointMetadata(
            kind="savepoint" if pending.is_savepoint else "checkpoint",
            checkpoint_id=pending.id,
            job_id=self.job["job_id"],
            job_name=self.job["name"],
            namespace=self.job["namespace"],
            trigger_timestamp_ms=pending.trigger_ms,
            completion_timestamp_ms=now,
            duration_ms=max(0, now - pending.trigger_ms),
            total_size=sum(h.size for h in handles),
            max_parallelism=self.graph.max_parallelism,
            mode=self.settings.mode,
            unaligned=pending.unaligned,
            restored_from=self.job.get("restored_from"),
            operators=operators,
            shared_files=sorted({h.path for h in handles if h.shared}),
            source_positions=positions,
        )

    # -- aborts ------------------------------------------------------------------------------------
    def _abort(
        self, checkpoint_id: int, reason: CheckpointFailureReason, *, detail: str | None = None, notify: bool = True
    ) -> None:
        pending = self.pending.get(checkpoint_id)
        if pending is None or pending.finalizing:
            return
        del self.pending[checkpoint_id]
        pending.discarded = True
        timer = self._timeouts.pop(checkpoint_id, None)
        if timer is not None:
            timer.cancel()
        message = reason.value + (f": {detail}" if detail else "")
        self.stats.record(
            CheckpointRecord(
                checkpoint_id,
                "savepoint" if pending.is_savepoint else "checkpoint",
                "FAILED",
                pending.trigger_ms,
                int((self.clock() - pending.started_monotonic) * 1000),
                failure=message,
            )
        )
        if not pending.is_savepoint:
            self.decider.finished(self.clock())
        if notify:
            self.gateway.notify_aborted(checkpoint_id)
        for listener in self.failed_listeners:
            listener(pending, message)
        asyncio.get_running_loop().run_in_executor(self.executor, self._discard, pending)
        self._wake.set()
        self._drain_queue()
        if notify and not pending.is_savepoint and self.failures.on_failure(reason):
            self.on_job_failure(
                f"checkpoint {checkpoint_id} failed and more than "
                f"{self.settings.tolerable_failures} consecutive checkpoint failures are "
                f"tolerated: {message}"
            )

    def _discard(self, pending: PendingCheckpoint) -> None:
        try:
            self.storage.discard(pending.id, savepoint_dir=pending.savepoint_dir)
        except Exception as err:
            log.debug("could not discard checkpoint %d: %s", pending.id, err)


def _aggregate_stats(pending: PendingCheckpoint) -> dict[str, float]:
    """Phases: the slowest task's (the checkpoint waits for it); CPU: the sum over tasks (what it costs)."""
    keys = ("alignment_ms", "sync_ms", "async_ms")
    out = {k: max((a.stats.get(k, 0.0) for a in pending.acks.values()), default=0.0) for k in keys}
    out["cpu_ms"] = round(sum(a.stats.get("cpu_ms", 0.0) for a in pending.acks.values()), 3)
    return out
