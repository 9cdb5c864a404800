"""When the next checkpoint starts: queued savepoints first, else the periodic rules.

Flink's CheckpointRequestDecider, reduced to what streamjob needs. Savepoint requests queue here
until no checkpoint is in progress (a savepoint and a periodic checkpoint never run at the same
time: with aligned barriers the newer would cancel the older at the tasks); periodic checkpoints
follow the interval, min pause and max concurrent. Pure (the clock is passed in): the coordinator
asks after every trigger, completion or abort.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamjob.worker.config import CheckpointSettings

if TYPE_CHECKING:
    from streamjob.worker.checkpoint.pending import PendingCheckpoint


@dataclass
class SavepointTrigger:
    """A savepoint waiting to be triggered, and whom to tell what became of it."""

    directory: str
    stop: bool
    request_id: str
    on_triggered: Callable[[PendingCheckpoint], None]
    on_failed: Callable[[str], None]


@dataclass
class TriggerDecider:
    """The queued savepoints and the periodic schedule of one attempt."""

    settings: CheckpointSettings
    last_trigger_s: float | None = None
    last_completion_s: float | None = None
    queued: list[SavepointTrigger] = field(default_factory=list)

    def delay(self, now_s: float, pending: int) -> float | None:
        """Seconds until the next periodic checkpoint may start.

        None when periodic checkpoints are disabled, at max concurrency, or while savepoints are queued.
        """
        interval = self.settings.interval_ms
        if interval is None or self.queued:
            return None
        if pending >= self.settings.max_concurrent:
            return None
        due = (self.last_trigger_s + interval / 1000) if self.last_trigger_s is not None else now_s
        if self.last_completion_s is not None:
            due = max(due, self.last_completion_s + self.settings.min_pause_ms / 1000)
        if pending > 0 and self.settings.min_pause_ms > 0:
            return None
        return max(0.0, due - now_s)

    def next_savepoint(self, pending: int) -> SavepointTrigger | None:
        """The queued savepoint to trigger now: the oldest, once no checkpoint is in progress."""
        return self.queued.pop(0) if self.queued and pending == 0 else None

    def drop_queued(self) -> list[SavepointTrigger]:
        """Removes and returns every queued savepoint (the attempt ends: they fail)."""
        dropped, self.queued = self.queued, []
        return dropped

    def triggered(self, now_s: float) -> None:
        """A periodic checkpoint started."""
        self.last_trigger_s = now_s

    def finished(self, now_s: float) -> None:
        """A checkpoint completed or was aborted (the min pause counts from here)."""
        self.last_completion_s = now_s
