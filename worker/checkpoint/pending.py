"""A checkpoint in progress: which tasks still owe an acknowledgement, and what they sent.

Owned by the coordinator; ``acknowledge`` returns a result instead of raising, so a late or
duplicate ack from a restarted task is a value the coordinator can log and ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from streamjob.worker.snapshot.handles import StateHandle

TaskKey = tuple[str, int]  # (vertex id, subtask index)


class AckResult(Enum):
    """What an acknowledgement did."""

    SUCCESS = "success"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    DISCARDED = "discarded"


@dataclass
class TaskAck:
    """One task's snapshot: per operator uid, its keyed, operator and channel state handles."""

    states: dict[str, dict[str, list[StateHandle]]]
    stats: dict[str, float]
    positions: list[Any]


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
    discarded: bool = False
    finalizing: bool = False

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
        """Records a task's snapshot."""
        if self.discarded:
            return AckResult.DISCARDED
        if task not in self.tasks:
            return AckResult.UNKNOWN
        if task in self.acks:
            return AckResult.DUPLICATE
        self.acks[task] = ack
        return AckResult.SUCCESS

    @property
    def complete(self) -> bool:
        """Every task acknowledged."""
        return not self.discarded and len(self.acks) == len(self.tasks)

    def missing(self) -> list[TaskKey]:
        """Tasks that have not acknowledged yet (for timeout messages)."""
        return sorted(self.tasks - self.acks.keys())
