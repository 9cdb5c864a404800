"""When to trigger the next periodic checkpoint: interval, min pause and max concurrent.

Pure (the clock is passed in): the coordinator asks after every trigger, completion or abort,
and sleeps for the returned delay.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamjob.worker.config import CheckpointSettings


@dataclass
class TriggerDecider:
    """Flink's CheckpointRequestDecider, reduced to its periodic rules."""

    settings: CheckpointSettings
    last_trigger_s: float | None = None
    last_completion_s: float | None = None

    def delay(self, now_s: float, pending: int) -> float | None:
        """Seconds until the next checkpoint may start; None when disabled or at max concurrency."""
        interval = self.settings.interval_ms
        if interval is None:
            return None
        if pending >= self.settings.max_concurrent:
            return None
        due = (self.last_trigger_s + interval / 1000) if self.last_trigger_s is not None else now_s
        if self.last_completion_s is not None:
            due = max(due, self.last_completion_s + self.settings.min_pause_ms / 1000)
        if pending > 0 and self.settings.min_pause_ms > 0:
            return None
        return max(0.0, due - now_s)

    def triggered(self, now_s: float) -> None:
        """A checkpoint started."""
        self.last_trigger_s = now_s

    def finished(self, now_s: float) -> None:
        """A checkpoint completed or was aborted (the min pause counts from here)."""
        self.last_completion_s = now_s
