"""The CPU time a task spends on checkpoints: the direct cost of checkpointing, per checkpoint.

Counted on every thread that does checkpoint work for the task — the task's own (barrier, the
synchronous snapshot, encoding slices, inline writes, acknowledgement, commit on completion) and the
I/O thread's (writing and syncing the files) — with ``time.thread_time``, which reads one thread's
CPU clock. A throughput comparison with and without checkpoints cannot resolve a cost of a few per
cent on a machine whose speed varies by ±10-20 % from one second to the next; this figure, set
against the task's CPU time, can: both are stretched alike when the machine is slow. The CPU clock
is read through the task's ``Clock`` (``runtime/clock.py``). Used by ``subtask_checkpointer``.

Only the outermost ``measure`` counts, so that nested checkpoint steps are not counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from streamjob.worker.runtime.clock import SYSTEM_CLOCK, Clock

P = ParamSpec("P")
T = TypeVar("T")


class CheckpointCpu:
    """Accumulates checkpoint CPU seconds; ``take`` hands over what was counted since the last call."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._thread_time = clock.thread_time
        self._seconds = 0.0
        self._depth = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Counts the CPU time of the block on this (the task's) thread."""
        if self._depth:
            yield
            return
        self._depth = 1
        started = self._thread_time()
        try:
            yield
        finally:
            self._seconds += self._thread_time() - started
            self._depth = 0

    def add(self, seconds: float) -> None:
        """CPU time measured on another thread (see ``timed``)."""
        self._seconds += seconds

    def take(self) -> float:
        """The seconds counted since the previous ``take``."""
        seconds, self._seconds = self._seconds, 0.0
        return seconds

    def timed(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
        """Runs ``fn`` (on an executor thread) and returns its result with that thread's CPU seconds for it."""
        started = self._thread_time()
        result = fn(*args, **kwargs)
        return result, self._thread_time() - started
