"""Why checkpoints fail, and when failures add up to a job failure (tolerable failure number).

``PendingCheckpoint.abort`` returns a ``CheckpointFailure``; the coordinator reports it to the
stats and the JobMaster and hands its reason to the ``CheckpointFailureManager`` it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from streamjob.worker.protocol.rest import CheckpointKind


class CheckpointFailureReason(Enum):
    """A failed checkpoint's cause, with the message users see."""

    TIMEOUT = "the checkpoint expired before every task acknowledged it (raise the checkpoint timeout?)"
    DECLINED = "a task declined the checkpoint"
    STORAGE = "writing the checkpoint to storage failed"
    TASK_FAILURE = "a task failed while the checkpoint was in progress"
    SUBSUMED = "a newer checkpoint overtook it"
    JOB_STOPPING = "the job is stopping"
    JOB_FINISHED = "the job finished (its sources ended) before it could be taken"

    @property
    def counts(self) -> bool:
        """Whether it counts towards the tolerable failure number (as in Flink)."""
        return self in (
            CheckpointFailureReason.TIMEOUT,
            CheckpointFailureReason.DECLINED,
            CheckpointFailureReason.STORAGE,
        )


@dataclass(frozen=True)
class CheckpointFailure:
    """An aborted checkpoint: which, why, and the message users see."""

    checkpoint_id: int
    kind: CheckpointKind
    reason: CheckpointFailureReason
    detail: str | None
    trigger_ms: int

    @property
    def message(self) -> str:
        """The reason's message, and the detail (a task's error) when there is one."""
        return self.reason.value + (f": {self.detail}" if self.detail else "")

    @property
    def is_savepoint(self) -> bool:
        """Whether a savepoint failed (never counted towards the tolerable failure number)."""
        return self.kind is CheckpointKind.SAVEPOINT


class CheckpointFailureManager:
    """Counts consecutive failures; more than ``tolerable`` fails the job."""

    def __init__(self, tolerable: int) -> None:
        self.tolerable = tolerable
        self.consecutive = 0

    def on_failure(self, reason: CheckpointFailureReason) -> bool:
        """Records a failure; True when the job must fail over."""
        if reason.counts:
            self.consecutive += 1
        return self.consecutive > self.tolerable

    def job_failure(self, failure: CheckpointFailure) -> str | None:
        """Counts a failed checkpoint; the message to fail the job over with once too many failed.

        A savepoint's failure is the user's request failing, never the job's: it is not counted.
        """
        if failure.is_savepoint or not self.on_failure(failure.reason):
            return None
        return (
            f"checkpoint {failure.checkpoint_id} failed and more than {self.tolerable} consecutive "
            f"checkpoint failures are tolerated: {failure.message}"
        )

    def on_success(self) -> None:
        """A completed checkpoint resets the count."""
        self.consecutive = 0
