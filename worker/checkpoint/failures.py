"""Why checkpoints fail, and when failures add up to a job failure (tolerable failure number)."""

from __future__ import annotations

from enum import Enum


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

    def on_success(self) -> None:
        """A completed checkpoint resets the count."""
        self.consecutive = 0
