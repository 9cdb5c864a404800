"""``FakeClock``: processing time under a test's control.

Part of the public test kit (``streamjob.worker.testing``). ``run_in_process(env, clock=clock)``
installs it as the processing-time clock of the run (``runtime.context.use_processing_clock``):
keyed timers (``timer_service().current_processing_time()`` and their firing), processing-time
windows and the aligned-checkpoint timeout then read it instead of the wall clock. Time moves only
when the test (or a function of the job) calls ``advance`` or ``set``; a task notices it within its
idle poll (50 ms), so a test waits for the effect, never for an amount of time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["FakeClock"]


class FakeClock:
    """Epoch milliseconds that only move forward when told to; safe to call from any thread.

    Only processing time (``now_ms``) is fake: ``monotonic`` and ``thread_time`` are the real clocks, so
    the object also has the shape of a task's clock (monotonic seconds, wall milliseconds, CPU seconds).
    """

    def __init__(self, start_ms: int = 0) -> None:
        """``start_ms``: the initial time (epoch milliseconds)."""
        self._check(start_ms, "start_ms")
        self._now = start_ms
        self._lock = threading.Lock()

    @staticmethod
    def _check(value: int, what: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"FakeClock {what} must be an int >= 0 (milliseconds), got {value!r}")

    def __call__(self) -> int:
        """The current time (epoch milliseconds)."""
        return self._now

    def now_ms(self) -> int:
        """The current time (epoch milliseconds)."""
        return self._now

    def monotonic(self) -> float:
        """Real monotonic seconds: durations, timeouts and time slices of the task loop keep real time."""
        return time.monotonic()

    def thread_time(self) -> float:
        """Real CPU seconds of the calling thread."""
        return time.thread_time()

    def advance(self, ms: int) -> int:
        """Moves time forward by ``ms``; returns the new time."""
        self._check(ms, "advance(ms)")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, now_ms: int) -> int:
        """Moves time to ``now_ms``, which must not lie in the past (processing time never goes back)."""
        self._check(now_ms, "set(now_ms)")
        with self._lock:
            if now_ms < self._now:
                raise ValueError(f"FakeClock.set({now_ms}) would move time back from {self._now}")
            self._now = now_ms
            return self._now

    def __copy__(self) -> FakeClock:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FakeClock:
        """The same clock: every copy of the job reads one time."""
        return self
