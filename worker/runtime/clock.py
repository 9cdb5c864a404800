"""The clocks a task reads, behind one small interface so that tests can drive time.

``Task``, ``SubtaskCheckpointer``, the barrier package (``runtime/barriers/``) and the output
channels take a ``Clock`` instead of calling ``time`` themselves; the slot passes the real one
(``SYSTEM_CLOCK``), unit tests a fake whose time they advance. ``SystemClock``'s methods are the
``time`` functions themselves, so a read costs what a direct call costs; its processing time is
``runtime.context.now_ms``, the one the operators' timer services read, so that timers are
registered and fired on the same clock.
"""

from __future__ import annotations

import time
from typing import Protocol

from streamjob.worker.runtime.context import now_ms


class Clock(Protocol):
    """Monotonic seconds for durations and timeouts, wall milliseconds for timers and timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, timeouts, time budgets)."""
        ...

    def now_ms(self) -> int:
        """Processing time: the wall clock in epoch milliseconds (timers)."""
        ...

    def thread_time(self) -> float:
        """CPU seconds of the calling thread (the checkpoint CPU figure)."""
        ...


class SystemClock:
    """The real clocks."""

    monotonic = staticmethod(time.monotonic)
    now_ms = staticmethod(now_ms)
    thread_time = staticmethod(time.thread_time)


SYSTEM_CLOCK: Clock = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]
