"""Window assigners, ``Time`` and ``ProcessWindowFunction`` (``KeyedStream.window``'s parts).

Assignment follows Flink's documented semantics: a tumbling window of size ``s`` and offset ``o``
holding timestamp ``t`` starts at ``t - (t - o) mod s``; a sliding window of size ``s`` and slide
``l`` holds ``t`` in every window starting at ``t - (t - o) mod l - k*l`` with a start ``> t - s``;
a session window starts as ``[t, t + gap)`` and merges with every window it intersects (windows
that touch, ``[0, 5)`` and ``[5, 10)``, merge too).

A window's contents are keyed state and its end is a keyed timer, so both are in every
checkpoint; a window whose end passed while the job was down fires right after restore.
Callers: ``KeyedStream.window``, the window operators (``runtime/operators.py``,
``runtime/event_windows.py``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streamjob.worker.api.functions import Collector, RichFunction
from streamjob.worker.api.side_outputs import OutputTag, emit_side_output
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

    def intersects(self, other: TimeWindow) -> bool:
        """True when the windows overlap or touch (session windows then merge)."""
        return self.start <= other.end and self.end >= other.start

    def cover(self, other: TimeWindow) -> TimeWindow:
        """The smallest window holding both."""
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))


def window_start(timestamp_ms: int, offset_ms: int, size_ms: int) -> int:
    """The start of the ``size_ms`` window (aligned to ``offset_ms``) holding ``timestamp_ms``."""
    return timestamp_ms - (timestamp_ms - offset_ms) % size_ms


def merge_windows(windows: Iterable[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
    """Groups intersecting windows: each merged window with the windows it covers, by start."""
    groups: list[tuple[TimeWindow, list[TimeWindow]]] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if groups and groups[-1][0].intersects(w):
            merged, members = groups[-1]
            groups[-1] = (merged.cover(w), [*members, w])
        else:
            groups.append((w, [w]))
    return groups


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"window {what} must be > 0 ms (use Time.seconds(...)), got {value!r}")
    return value


class WindowAssigner:
    """Decides which windows a record belongs to."""

    size_ms: int
    is_event_time: bool = False
    is_merging: bool = False

    @abstractmethod
    def assign(self, timestamp_ms: int) -> TimeWindow: ...

    def assign_windows(self, timestamp_ms: int) -> list[TimeWindow]:
        """Every window holding ``timestamp_ms`` (one for tumbling and session assigners)."""
        return [self.assign(timestamp_ms)]

    def assign_spans(self, timestamp_ms: int) -> list[tuple[int, int]]:
        """``assign_windows`` as ``(start, end)`` pairs (the window operator's per-record form)."""
        return [(w.start, w.end) for w in self.assign_windows(timestamp_ms)]


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
        start = window_start(timestamp_ms, self.offset_ms, self.size_ms)
        return TimeWindow(start, start + self.size_ms)

    def assign_spans(self, timestamp_ms: int) -> list[tuple[int, int]]:
        start = timestamp_ms - (timestamp_ms - self.offset_ms) % self.size_ms
        return [(start, start + self.size_ms)]


class TumblingEventTimeWindows(TumblingProcessingTimeWindows):
    """Fixed-size, non-overlapping windows by the records' event timestamps."""

    is_event_time = True

    def __init__(self, size_ms: int, offset_ms: int = 0) -> None:
        _positive(size_ms, "size")
        if not 0 <= offset_ms < size_ms:
            raise ConfigError(f"window offset must be in [0, size), got {offset_ms} for size {size_ms}")
        super().__init__(size_ms, offset_ms)

    @staticmethod
    def of(size_ms: int, offset_ms: int = 0) -> TumblingEventTimeWindows:
        """Windows of ``size_ms`` (use ``Time.seconds(1)``)."""
        return TumblingEventTimeWindows(size_ms, offset_ms)


class SlidingEventTimeWindows(WindowAssigner):
    """Windows of ``size_ms`` starting every ``slide_ms``; a record is in ``size / slide`` of them."""

    is_event_time = True

    def __init__(self, size_ms: int, slide_ms: int, offset_ms: int = 0) -> None:
        self.size_ms = _positive(size_ms, "size")
        self.slide_ms = _positive(slide_ms, "slide")
        if not 0 <= offset_ms < slide_ms:
            raise ConfigError(f"window offset must be in [0, slide), got {offset_ms} for slide {slide_ms}")
        self.offset_ms = offset_ms

    @classmethod
    def of(cls, size_ms: int, slide_ms: int, offset_ms: int = 0) -> SlidingEventTimeWindows:
        """Windows of ``size_ms`` every ``slide_ms``."""
        return cls(size_ms, slide_ms, offset_ms)

    def assign(self, timestamp_ms: int) -> TimeWindow:
        return self.assign_windows(timestamp_ms)[0]

    def assign_windows(self, timestamp_ms: int) -> list[TimeWindow]:
        """Latest start first, as Flink lists them."""
        return [TimeWindow(a, b) for a, b in self.assign_spans(timestamp_ms)]

    def assign_spans(self, timestamp_ms: int) -> list[tuple[int, int]]:
        size, slide = self.size_ms, self.slide_ms
        start = timestamp_ms - (timestamp_ms - self.offset_ms) % slide
        return [(s, s + size) for s in range(start, timestamp_ms - size, -slide)]


class SlidingProcessingTimeWindows(SlidingEventTimeWindows):
    """Sliding windows by the task's wall clock."""

    is_event_time = False


class EventTimeSessionWindows(WindowAssigner):
    """Windows that close ``gap_ms`` after a key's last record; sessions that meet merge."""

    is_event_time = True
    is_merging = True

    def __init__(self, gap_ms: int) -> None:
        self.gap_ms = _positive(gap_ms, "session gap")
        self.size_ms = self.gap_ms

    @classmethod
    def with_gap(cls, gap_ms: int) -> EventTimeSessionWindows:
        """Sessions ending ``gap_ms`` after their last record."""
        return cls(gap_ms)

    def assign(self, timestamp_ms: int) -> TimeWindow:
        return TimeWindow(timestamp_ms, timestamp_ms + self.gap_ms)


class ProcessingTimeSessionWindows(EventTimeSessionWindows):
    """Session windows by the task's wall clock."""

    is_event_time = False


class GlobalWindow:
    """The one window of ``GlobalWindows``: every record of a key, never ending (``max_timestamp`` is the maximum)."""

    start = -(2**63)
    end = 2**63 - 1

    def max_timestamp(self) -> int:
        """The largest timestamp (Flink's ``Long.MAX_VALUE``): the window never ends by time."""
        return self.end

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobalWindow)

    def __hash__(self) -> int:
        return hash(GlobalWindow)

    def __repr__(self) -> str:
        return "GlobalWindow"


class GlobalWindows(WindowAssigner):
    """All records of a key in one window that only a trigger fires (default: never; see ``count_window``)."""

    size_ms = 0

    @staticmethod
    def create() -> GlobalWindows:
        """The assigner (Flink's ``GlobalWindows.create()``)."""
        return GlobalWindows()

    def assign(self, timestamp_ms: int) -> TimeWindow:
        raise TypeError("GlobalWindows assign the GlobalWindow: use assign_global()")

    def assign_spans(self, timestamp_ms: int) -> list[tuple[int, int]]:
        return [(GlobalWindow.start, GlobalWindow.end)]


class WindowContext:
    """What ``ProcessWindowFunction.process`` knows about the window firing."""

    def __init__(
        self,
        window: TimeWindow | GlobalWindow,
        now_ms: int,
        watermark_ms: int | None = None,
        side_outputs: dict[str, list[Any]] | None = None,
    ) -> None:
        self._window = window
        self._now = now_ms
        self._watermark = watermark_ms
        self._side = {} if side_outputs is None else side_outputs

    def window(self) -> Any:
        """The window being emitted (a ``TimeWindow``, or the ``GlobalWindow``)."""
        return self._window

    def current_processing_time(self) -> int:
        """The task's clock when the window fired."""
        return self._now

    def current_watermark(self) -> int | None:
        """The operator's watermark when the window fired (None for processing-time windows)."""
        return self._watermark

    def output(self, tag: OutputTag, value: Any) -> None:
        """Emits ``value`` to the side output ``tag`` (``get_side_output(tag)`` on the windowed result)."""
        emit_side_output(self._side, tag, value)


class ProcessWindowFunction(RichFunction, Generic[IN, OUT, KEY]):
    """Called once per key and window with all the window's records (or the one pre-aggregated result)."""

    @abstractmethod
    def process(self, key: KEY, context: WindowContext, elements: Iterable[IN], out: Collector[OUT]) -> None: ...


class ProcessAllWindowFunction(RichFunction, Generic[IN, OUT]):
    """``window_all(...).process``: called once per window with all its records (no key)."""

    @abstractmethod
    def process(self, context: WindowContext, elements: Iterable[IN], out: Collector[OUT]) -> None: ...


class _AllWindowAdapter(ProcessWindowFunction[Any, Any, Any]):
    """Runs a ``ProcessAllWindowFunction`` as the keyed window function of ``window_all`` (drops the key)."""

    def __init__(self, function: ProcessAllWindowFunction[Any, Any]) -> None:
        self.function = function

    def open(self, runtime_context: Any) -> None:
        self.function.set_runtime_context(runtime_context)
        self.function.open(runtime_context)

    def close(self) -> None:
        self.function.close()

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Collector[Any]) -> None:
        self.function.process(context, elements, out)


def all_window_function(function: ProcessAllWindowFunction[Any, Any]) -> ProcessWindowFunction[Any, Any, Any]:
    """The window function ``window_all`` runs for ``function``."""
    return _AllWindowAdapter(function)
