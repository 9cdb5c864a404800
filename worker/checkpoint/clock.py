"""The coordinator's clocks and timers, behind one small interface so that tests can drive time.

The checkpoint coordinator reads monotonic seconds (durations, the trigger decider), wall
milliseconds (trigger and completion timestamps in ``_metadata``) and sets timers (checkpoint
timeouts, the next periodic trigger) only through a ``CoordinatorClock``; the JobMaster gives it a
``LoopClock`` (the real clocks and the running event loop's timers), unit tests a fake they advance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    """A timer that has not fired yet can be cancelled."""

    def cancel(self) -> None: ...


class CoordinatorClock(Protocol):
    """Monotonic seconds, wall milliseconds and one-shot timers."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def now_ms(self) -> int:
        """The wall clock in epoch milliseconds."""
        ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        """Runs ``callback`` on the event loop once ``delay_s`` seconds have passed."""
        ...


class LoopClock:
    """The real clocks; timers on the running event loop (call ``call_later`` from the loop)."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now_ms(self) -> int:
        """``time.time()`` in milliseconds."""
        return int(time.time() * 1000)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        """``loop.call_later`` of the running loop."""
        return asyncio.get_running_loop().call_later(delay_s, callback)
