"""Processing-time windows: assigners, ``Time`` and ``ProcessWindowFunction`` (``KeyedStream.window``'s parts).

A window's contents are keyed state and its end is a keyed timer, so both are in every
checkpoint; a window whose end passed while the job was down fires right after restore.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from streamjob.worker.api.functions import Collector, RichFunction
from streamjob.worker.errors import ConfigError

IN = TypeVar("IN")
OUT = TypeVar("OUT")
KEY = TypeVar("KEY")


class Time:
    """Durations for window sizes, as Flink's ``Time``."""

    @staticmethod
    def milliseconds(n: int) -> int:
        """``n`` milliseconds."""
        return int(n)

    @staticmethod
    def seconds(n: float) -> int:
        """``n`` seconds in milliseconds."""
        return int(n * 1000)

    @staticmethod
    def minutes(n: float) -> int:
        """``n`` minutes in milliseconds."""
        return int(n * 60_000)


@dataclass(frozen=True)
class TimeWindow:
    """``[start, end)`` in epoch milliseconds."""

    start: int
    end: int

    def max_timestamp(self) -> int:
        """The last millisecond inside the window."""
        return self.end - 1


class WindowAssigner:
    """Decides which window a record belongs to."""

    size_ms: int

    @abstractmethod
    def assign(self, timestamp_ms: int) -> TimeWindow: ...


class TumblingProcessingTimeWindows(WindowAssigner):
    """Fixed-size, non-overlapping windows by the wall clock of the task."""

    def __init__(self, size_ms: int, offset_ms: int = 0) -> None:
        if size_ms <= 0:
            raise ConfigError(f"window size must be > 0 ms, got {size_ms}")
        self.size_ms = size_ms
        self.offset_ms = offset_ms

    @staticmethod
    def of(size_ms: int, offset_ms: int = 0) -> TumblingProcessingTimeWindows:
        """Windows of ``size_ms`` (use ``Time.seconds(10)``)."""
        return TumblingProcessingTimeWindows(size_ms, offset_ms)

    def assign(self, timestamp_ms: int) -> TimeWindow:
        start = timestamp_ms - (timestamp_ms - self.offset_ms) % self.size_ms
        return TimeWindow(start, start + self.size_ms)


class WindowContext:
    """What ``ProcessWindowFunction.process`` knows about the window firing."""

    def __init__(self, window: TimeWindow, now_ms: int) -> None:
        self._window = window
        self._now = now_ms

    def window(self) -> TimeWindow:
        """The window being emitted."""
        return self._window

    def current_processing_time(self) -> int:
        """The task's clock when the window fired."""
        return self._now


class ProcessWindowFunction(RichFunction, Generic[IN, OUT, KEY]):
    """Called once per key and window with all the window's records."""

    @abstractmethod
    def process(self, key: KEY, context: WindowContext, elements: Iterable[IN], out: Collector[OUT]) -> None: ...
