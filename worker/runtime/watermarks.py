"""The watermark valve of a task's inputs: the task's watermark is the minimum over its input channels.

Semantics as Flink's ``StatusWatermarkValve`` documents them:

- each channel's watermark only moves forward (a smaller one from a channel is ignored);
- the task's watermark is the minimum over the *active* channels, and is emitted only when it
  grows;
- an idle channel is left out of the minimum; when every channel is idle, the largest of their
  watermarks is emitted first (nothing is held back by inputs that will not speak), then the task
  itself is idle;
- an idle channel that becomes active again joins the minimum only once its watermark has caught
  up with the task's (it cannot move the task's watermark back);
- a channel that ended counts as ``MAX_WATERMARK`` (its producer sent that before the end).

Pure: the task (or a test) feeds channel watermarks and statuses and forwards what comes back.
Callers: the runtime's input handling; unit tests.
"""

from __future__ import annotations

from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK


class WatermarkValve:
    """Combines the watermarks and idle statuses of ``channels`` input channels into one."""

    __slots__ = ("_aligned", "_idle", "_out", "_task_idle", "_wms")

    def __init__(self, channels: int) -> None:
        self._wms = [MIN_WATERMARK] * channels
        self._idle = [False] * channels
        self._aligned = [True] * channels
        self._out = MIN_WATERMARK
        self._task_idle = False

    @property
    def current(self) -> int:
        """The last watermark emitted (``MIN_WATERMARK`` before the first)."""
        return self._out

    @property
    def idle(self) -> bool:
        """True while every channel is idle."""
        return self._task_idle

    def restore(self, watermark: int) -> None:
        """Starts from a restored watermark (a channel cannot take the task's watermark below it)."""
        self._out = max(self._out, watermark)

    def on_watermark(self, channel: int, watermark: int) -> int | None:
        """A channel's watermark; returns the task's new watermark when it grew, else None."""
        if watermark <= self._wms[channel]:
            if self._idle[channel]:
                return self.on_status(channel, idle=False)
            return None
        self._wms[channel] = watermark
        if self._idle[channel]:
            self._idle[channel] = False
            self._task_idle = False
        if watermark >= self._out:
            self._aligned[channel] = True
        return self._advance()

    def on_status(self, channel: int, *, idle: bool) -> int | None:
        """A channel became idle or active; returns the task's new watermark when it grew."""
        if idle == self._idle[channel]:
            return None
        self._idle[channel] = idle
        if idle:
            self._aligned[channel] = False
            if all(self._idle):
                self._task_idle = True
                top = max(self._wms)
                if top > self._out:
                    self._out = top
                    return top
                return None
            return self._advance()
        self._task_idle = False
        self._aligned[channel] = self._wms[channel] >= self._out
        return None

    def on_end(self, channel: int) -> int | None:
        """The channel's producer ended (it counts as ``MAX_WATERMARK`` from now on)."""
        self._idle[channel] = False
        return self.on_watermark(channel, MAX_WATERMARK)

    def _advance(self) -> int | None:
        lowest: int | None = None
        for wm, idle, aligned in zip(self._wms, self._idle, self._aligned, strict=True):
            if not idle and aligned and (lowest is None or wm < lowest):
                lowest = wm
        if lowest is not None and lowest > self._out:
            self._out = lowest
            return lowest
        return None


__all__ = ["WatermarkValve"]
