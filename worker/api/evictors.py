"""Window evictors: remove records from a window before or after its function runs (Flink's ``Evictor``).

A window with an evictor keeps its records (with their timestamps) instead of an accumulator; when
the trigger fires, ``evict_before`` may remove some from the list, the window function (or the
reduce/aggregate function, folded then) runs over the rest, ``evict_after`` may remove more, and the
remaining records stay in the window. The built-ins follow Flink's:

- ``CountEvictor.of(n)``: keeps the last ``n`` records (in arrival order).
- ``TimeEvictor.of(ms)``: keeps the records whose timestamp is within ``ms`` of the largest
  timestamp in the window (removes those with ``timestamp <= max - ms``); records without a
  timestamp are kept.
- ``DeltaEvictor.of(threshold, delta)``: removes the records whose ``delta(record, last)`` is
  ``>= threshold``, ``last`` being the window's newest record.

Each evicts before the function unless ``do_evict_after=True``. Callers: ``WindowedStream.evictor``
and ``count_window``; the trigger window operator (``runtime/trigger_windows.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.errors import ConfigError


class TimestampedValue:
    """A window record with its event timestamp (None when the stream has no event time)."""

    __slots__ = ("timestamp", "value")

    def __init__(self, value: Any, timestamp: int | None) -> None:
        self.value = value
        self.timestamp = timestamp

    def get_value(self) -> Any:
        """The record."""
        return self.value

    def get_timestamp(self) -> int | None:
        """Its event timestamp, or None."""
        return self.timestamp

    def has_timestamp(self) -> bool:
        """Whether the record has an event timestamp."""
        return self.timestamp is not None


class Evictor:
    """Removes records from a firing window's list (mutate ``elements`` in place)."""

    def __init__(self, do_evict_after: bool = False) -> None:
        self.do_evict_after = bool(do_evict_after)

    def evict_before(self, elements: list[TimestampedValue], size: int, window: Any, ctx: Any) -> None:
        """Before the window function: evicts unless ``do_evict_after``."""
        if not self.do_evict_after:
            self.evict(elements, size, window)

    def evict_after(self, elements: list[TimestampedValue], size: int, window: Any, ctx: Any) -> None:
        """After the window function: evicts when ``do_evict_after``."""
        if self.do_evict_after:
            self.evict(elements, size, window)

    def evict(self, elements: list[TimestampedValue], size: int, window: Any) -> None:
        """The eviction rule of the built-ins (a custom evictor may override the two hooks instead)."""


class CountEvictor(Evictor):
    """Keeps at most ``max_count`` records: the newest."""

    def __init__(self, max_count: int, do_evict_after: bool = False) -> None:
        if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count <= 0:
            raise ConfigError(f"CountEvictor.of(max_count) needs an integer > 0, got {max_count!r}")
        super().__init__(do_evict_after)
        self.max_count = max_count

    @staticmethod
    def of(max_count: int, do_evict_after: bool = False) -> CountEvictor:
        """Keeps the last ``max_count`` records of the window."""
        return CountEvictor(max_count, do_evict_after)

    def evict(self, elements: list[TimestampedValue], size: int, window: Any) -> None:
        if size > self.max_count:
            del elements[: size - self.max_count]


class TimeEvictor(Evictor):
    """Keeps the records within ``window_size_ms`` of the window's newest timestamp."""

    def __init__(self, window_size_ms: int, do_evict_after: bool = False) -> None:
        if isinstance(window_size_ms, bool) or not isinstance(window_size_ms, int) or window_size_ms < 0:
            raise ConfigError(f"TimeEvictor.of(window_size_ms) needs milliseconds >= 0, got {window_size_ms!r}")
        super().__init__(do_evict_after)
        self.window_size = window_size_ms

    @staticmethod
    def of(window_size_ms: int, do_evict_after: bool = False) -> TimeEvictor:
        """Evicts records older than ``window_size_ms`` before the newest one."""
        return TimeEvictor(window_size_ms, do_evict_after)

    def evict(self, elements: list[TimestampedValue], size: int, window: Any) -> None:
        stamps = [e.timestamp for e in elements if e.timestamp is not None]
        if not stamps:
            return
        cutoff = max(stamps) - self.window_size
        elements[:] = [e for e in elements if e.timestamp is None or e.timestamp > cutoff]


class DeltaEvictor(Evictor):
    """Evicts the records whose ``delta(record, newest)`` is at least ``threshold``."""

    def __init__(self, threshold: float, delta: Callable[[Any, Any], float], do_evict_after: bool = False) -> None:
        if not callable(delta):
            raise ConfigError("DeltaEvictor.of(threshold, delta) needs a function delta(a, b) -> number")
        super().__init__(do_evict_after)
        self.threshold = threshold
        self.delta = getattr(delta, "get_delta", delta)

    @staticmethod
    def of(threshold: float, delta: Callable[[Any, Any], float], do_evict_after: bool = False) -> DeltaEvictor:
        """Evicts records at least ``threshold`` away from the newest (by ``delta(a, b)``)."""
        return DeltaEvictor(threshold, delta, do_evict_after)

    def evict(self, elements: list[TimestampedValue], size: int, window: Any) -> None:
        if not elements:
            return
        last = elements[-1].value
        delta, threshold = self.delta, self.threshold
        elements[:] = [e for e in elements if delta(e.value, last) < threshold]


__all__ = ["CountEvictor", "DeltaEvictor", "Evictor", "TimeEvictor", "TimestampedValue"]
