"""A checkpoint in progress, from the trigger until it is finalized or aborted.

Owned by the coordinator. ``acknowledge`` returns a result instead of raising, so a late or
duplicate ack from a restarted task is a value the coordinator can log and ignore. The pending
checkpoint moves through its own states (``PendingState``): the last acknowledgement makes it
``ACKNOWLEDGED``, from when it can no longer be aborted (its ``_metadata`` is about to be written,
and discarding its files then would leave a completed checkpoint with missing state);
``finalize`` writes ``_metadata`` and yields the immutable ``CompletedCheckpoint``; ``abort`` ends
it as failed and says whether it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from streamjob.worker.checkpoint.acks import TaskAck, TaskKey
from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.failures import CheckpointFailure, CheckpointFailureReason
from streamjob.worker.checkpoint.finalize import (
    JobDescription,
    SnapshotFacts,
    aggregate_phases,
    build_metadata,
    written_size,
)
from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.storage.checkpoint_storage import CoordinatorStorageView


class AckResult(Enum):
    """What an acknowledgement did."""

    SUCCESS = "success"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    DISCARDED = "discarded"


class PendingState(Enum):
    """Where a pending checkpoint is."""

    IN_PROGRESS = "in progress"
    ACKNOWLEDGED = "acknowledged by every task"
    FINALIZE_FAILED = "writing its _metadata failed"
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass
class PendingCheckpoint:
    """Checkpoint ``id`` from trigger to completion or abort."""

    id: int
    trigger_ms: int
    started_monotonic: float
    tasks: frozenset[TaskKey]
    savepoint_dir: str | None = None
    stop: bool = False
    unaligned: bool = False
    request_id: str | None = None
    acks: dict[TaskKey, TaskAck] = field(default_factory=dict)
    state: PendingState = PendingState.IN_PROGRESS

    @property
    def kind(self) -> CheckpointKind:
        """Checkpoint or savepoint."""
        return CheckpointKind.SAVEPOINT if self.savepoint_dir is not None else CheckpointKind.CHECKPOINT

    @property
    def is_savepoint(self) -> bool:
        """Whether this is a savepoint (self-contained, not subject to retention)."""
        return self.savepoint_dir is not None

    @property
    def commits_side_effects(self) -> bool:
        """Whether completing it notifies the tasks, i.e. two-phase-commit sinks commit up to it.

        Checkpoints and stop-with-savepoint do; an intermediate savepoint does not (Flink >= 1.15,
        FLIP-193): recovery never restores it, so output committed at it would be committed again
        after a failure that falls back to the checkpoint before it. Its pre-committed transactions
        stay pending in the tasks and the next checkpoint commits them.
        """
        return not self.is_savepoint or self.stop

    def acknowledge(self, task: TaskKey, ack: TaskAck) -> AckResult:
        """Records a task's snapshot; the last one makes the checkpoint ``ACKNOWLEDGED``."""
        if self.state is PendingState.ABORTED:
            return AckResult.DISCARDED
        if task not in self.tasks:
            return AckResult.UNKNOWN
        if task in self.acks:
            return AckResult.DUPLICATE
        self.acks[task] = ack
        if len(self.acks) == len(self.tasks):
            self.state = PendingState.ACKNOWLEDGED
        return AckResult.SUCCESS

    @property
    def fully_acknowledged(self) -> bool:
        """Every task acknowledged and ``finalize`` has not run yet."""
        return self.state is PendingState.ACKNOWLEDGED

    def missing(self) -> list[TaskKey]:
        """Tasks that have not acknowledged yet (for timeout messages)."""
        return sorted(self.tasks - self.acks.keys())

    def finalize(
        self,
        job: JobDescription,
        storage: CoordinatorStorageView,
        completion_ms: int,
        referenced: frozenset[str] = frozenset(),
    ) -> CompletedCheckpoint:
        """Writes ``_metadata`` (last: it marks the checkpoint completed) and returns the completed checkpoint.

        ``referenced``: the shared files of the previous completed checkpoint (``written_size``).

        Blocking I/O: the coordinator runs it on its executor. If the write fails the error is raised
        and the checkpoint is ``FINALIZE_FAILED``, which ``abort`` then ends.
        """
        if self.state is not PendingState.ACKNOWLEDGED:
            raise RuntimeError(f"checkpoint {self.id} cannot be finalized: it is {self.state.value}")
        facts = SnapshotFacts(self.id, self.kind, self.trigger_ms, self.unaligned)
        meta = build_metadata(facts, self.acks, job, completion_ms)
        try:
            location = storage.write_metadata(meta, savepoint_dir=self.savepoint_dir)
        except BaseException:
            self.state = PendingState.FINALIZE_FAILED
            raise
        self.state = PendingState.COMPLETED
        return CompletedCheckpoint(
            id=self.id,
            kind=self.kind,
            trigger_ms=self.trigger_ms,
            completion_ms=completion_ms,
            size=meta.total_size,
            incremental_size=written_size(meta, referenced),
            shared_files=frozenset(meta.shared_files),
            location=location,
            stop=self.stop,
            request_id=self.request_id,
            phases=aggregate_phases(self.acks),
        )

    def abort(self, reason: CheckpointFailureReason, detail: str | None = None) -> CheckpointFailure | None:
        """Ends the checkpoint as failed; None (and nothing changes) when it is past aborting.

        A checkpoint every task acknowledged cannot be aborted until writing its ``_metadata``
        failed: a stop, decline or timeout in between must not discard files that the
        ``_metadata`` then references.
        """
        if self.state not in (PendingState.IN_PROGRESS, PendingState.FINALIZE_FAILED):
            return None
        self.state = PendingState.ABORTED
        return CheckpointFailure(self.id, self.kind, reason, detail, self.trigger_ms)
