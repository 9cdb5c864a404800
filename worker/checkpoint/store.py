"""The completed checkpoints of an attempt, and retention: which are kept and which storage deletes.

Flink's ``CompletedCheckpointStore``. The coordinator ``add``s every ``CompletedCheckpoint``; the
store keeps the newest ``retained`` checkpoints (older ones are subsumed) and every savepoint, and
then has storage delete what retention no longer keeps, on the executor, one run at a time
(completions during a run coalesce into one more run).

What retention deletes is decided here with ``storage.retention.plan_retention`` over what storage
lists under the jobId (so checkpoints of earlier attempts and incomplete directories are included):
the newest ``retained`` valid checkpoints are kept, with every shared file they reference. A plan
that would delete a checkpoint this store still keeps (its ``_metadata`` could not be read just then)
is not run. Savepoints live outside the jobId and are never deleted by retention. A failed deletion is
logged and retried by the next run; it never removes a completed checkpoint from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import Executor

from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.storage.retention import RetentionPlan, RetentionStorage, plan_retention

log = logging.getLogger(__name__)


class CompletedCheckpointStore:
    """The newest ``retained`` completed checkpoints and the savepoints of one attempt."""

    def __init__(
        self, *, retained: int, storage: RetentionStorage, executor: Executor, savepoint_history: int = 10
    ) -> None:
        """``retained`` >= 1 (``CheckpointSettings.retained``); ``executor`` runs the deletions."""
        if retained < 1:
            raise ValueError(f"retained must be at least 1, got {retained}")
        self.retained = retained
        self.storage = storage
        self.executor = executor
        self._checkpoints: deque[CompletedCheckpoint] = deque()
        self._savepoints: deque[CompletedCheckpoint] = deque(maxlen=savepoint_history)
        self._run: asyncio.Future[RetentionPlan | None] | None = None
        self._again = False

    @property
    def checkpoints(self) -> tuple[CompletedCheckpoint, ...]:
        """The checkpoints kept, oldest first."""
        return tuple(self._checkpoints)

    @property
    def savepoints(self) -> tuple[CompletedCheckpoint, ...]:
        """The latest savepoints of this attempt, oldest first (kept in storage whatever retention does)."""
        return tuple(self._savepoints)

    @property
    def latest(self) -> CompletedCheckpoint | None:
        """The newest completed checkpoint (not savepoint): what a restart of this jobId restores."""
        return self._checkpoints[-1] if self._checkpoints else None

    def add(self, completed: CompletedCheckpoint) -> list[CompletedCheckpoint]:
        """Records a completion; returns the checkpoints it subsumed (no longer kept), oldest first.

        Call it on the event loop: a checkpoint also starts a retention run on the executor.
        """
        if completed.is_savepoint:
            self._savepoints.append(completed)
            return []
        self._checkpoints.append(completed)
        subsumed = []
        while len(self._checkpoints) > self.retained:
            subsumed.append(self._checkpoints.popleft())
        self._schedule()
        return subsumed

    @property
    def retention_running(self) -> asyncio.Future[RetentionPlan | None] | None:
        """The retention run in progress, if any (tests and shutdown wait for it)."""
        return self._run if self._run is not None and not self._run.done() else None

    def _schedule(self) -> None:
        if self.retention_running is not None:
            self._again = True
            return
        self._again = False
        kept = frozenset(c.id for c in self._checkpoints)
        self._run = asyncio.get_running_loop().run_in_executor(self.executor, self._retain, kept)
        self._run.add_done_callback(self._done)

    def _done(self, _: asyncio.Future[RetentionPlan | None]) -> None:
        if self._again:
            self._schedule()

    def _retain(self, kept: frozenset[int]) -> RetentionPlan | None:
        """Plans and runs one retention (on the executor); None when nothing was deleted."""
        try:
            plan = plan_retention(self.storage.list_checkpoints(), self.retained)
            if plan.empty:
                return None
            doomed = kept.intersection(plan.delete_ids)
            if doomed:
                log.warning(
                    "retention skipped: storage did not list checkpoints %s that are kept (tried again later)",
                    sorted(doomed),
                )
                return None
            self.storage.delete_checkpoints(plan)
            return plan
        except Exception as err:
            log.warning("retention of old checkpoints failed (retried after the next checkpoint): %s", err)
            return None
