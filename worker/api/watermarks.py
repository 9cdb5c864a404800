"""Event time: ``WatermarkStrategy``, its timestamp assigners and watermark generators.

A strategy says how a record's event timestamp is found and how far the stream's event-time
clock (the watermark) may advance. Semantics follow Flink's documentation:

- ``for_bounded_out_of_orderness(d)``: the watermark trails the largest timestamp seen by ``d``:
  it is ``max_timestamp - d - 1`` (a record with timestamp ``max_timestamp - d`` is still on time).
- ``for_monotonous_timestamps()``: the same with ``d = 0``.
- ``no_watermarks()``: the watermark never advances (only the end of a bounded input does).
- ``with_idleness(d)``: an input that sees no record for ``d`` of processing time is marked idle,
  so that the minimum over a task's inputs no longer waits for it; its next record makes it active.

Generators are asked for a watermark after each batch of records (the runtime's periodic emit), so
a watermark never depends on a record's position inside a batch. Callers: ``DataStream``'s
``assign_timestamps_and_watermarks`` and the sources (one generator per split), the runtime's
watermark valve (``runtime/watermarks.py``) and the event-time window operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from streamjob.worker.errors import ConfigError

MIN_WATERMARK = -(2**63)
"""The watermark before anything is known (Flink's ``Long.MIN_VALUE``)."""

MAX_WATERMARK = 2**63 - 1
"""The watermark a bounded input ends with: every event-time window and timer fires."""


class TimestampAssigner(Protocol):
    """Extracts a record's event timestamp (epoch milliseconds)."""

    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int: ...


class WatermarkGenerator(Protocol):
    """Tracks the timestamps of one input (a split) and says how far its watermark may go."""

    def on_event(self, timestamp_ms: int) -> None:
        """A record with this timestamp was read."""

    def current_watermark(self) -> int:
        """The watermark to emit now (the periodic emit); ``MIN_WATERMARK`` while nothing is known."""
        ...


class BoundedOutOfOrdernessWatermarks:
    """Watermark = the largest timestamp seen minus the bound minus 1 ms."""

    __slots__ = ("_bound", "_max")

    def __init__(self, bound_ms: int) -> None:
        self._bound = bound_ms
        self._max: int | None = None

    def on_event(self, timestamp_ms: int) -> None:
        if self._max is None or timestamp_ms > self._max:
            self._max = timestamp_ms

    def current_watermark(self) -> int:
        return MIN_WATERMARK if self._max is None else self._max - self._bound - 1


class NoWatermarks:
    """Never advances the watermark."""

    __slots__ = ()

    def on_event(self, timestamp_ms: int) -> None:
        return None

    def current_watermark(self) -> int:
        return MIN_WATERMARK


class IdlenessTracker:
    """Wraps a generator: idle once no record came for ``timeout_ms`` (Flink's ``WatermarksWithIdleness``)."""

    __slots__ = ("_clock", "_inner", "_last_event", "_timeout")

    def __init__(self, inner: WatermarkGenerator, timeout_ms: int, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._timeout = timeout_ms
        self._clock = clock
        self._last_event = clock()

    def on_event(self, timestamp_ms: int) -> None:
        self._last_event = self._clock()
        self._inner.on_event(timestamp_ms)

    def current_watermark(self) -> int:
        return self._inner.current_watermark()

    def is_idle(self) -> bool:
        """True when the last record is older than the timeout."""
        return (self._clock() - self._last_event) * 1000 >= self._timeout


class _CallableAssigner:
    __slots__ = ("fn", "two_args")

    def __init__(self, fn: Callable[..., int]) -> None:
        self.fn = fn
        code = getattr(fn, "__code__", None)
        self.two_args = code is not None and code.co_argcount >= 2

    def extract_timestamp(self, value: Any, record_timestamp: int | None) -> int:
        return int(self.fn(value, record_timestamp) if self.two_args else self.fn(value))


def _duration_ms(value: Any, what: str) -> int:
    seconds = getattr(value, "total_seconds", None)
    ms = int(seconds() * 1000) if callable(seconds) else value
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ConfigError(f"{what} must be a duration in milliseconds >= 0 (or a timedelta), got {value!r}")
    return ms


@dataclass(frozen=True)
class WatermarkStrategy:
    """How to find event timestamps and generate watermarks; build one with the ``for_*`` constructors."""

    kind: str
    bound_ms: int = 0
    assigner: TimestampAssigner | None = None
    idle_timeout_ms: int | None = None

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness: Any) -> WatermarkStrategy:
        """Records may arrive up to ``max_out_of_orderness`` ms (or a timedelta) late; later ones are late data."""
        return WatermarkStrategy("bounded", _duration_ms(max_out_of_orderness, "max_out_of_orderness"))

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy:
        """Timestamps never decrease within a split."""
        return WatermarkStrategy("bounded", 0)

    @staticmethod
    def no_watermarks() -> WatermarkStrategy:
        """Timestamps without watermarks: event-time windows fire only at the end of a bounded input."""
        return WatermarkStrategy("none")

    def with_timestamp_assigner(self, assigner: TimestampAssigner | Callable[..., int]) -> WatermarkStrategy:
        """Takes each record's timestamp from ``assigner``.

        An object with ``extract_timestamp(value, record_ts)``, or a function of ``value`` (or of
        ``value, record_timestamp``).
        """
        if hasattr(assigner, "extract_timestamp"):
            return replace(self, assigner=assigner)  # type: ignore[arg-type]
        if not callable(assigner):
            raise ConfigError(
                "with_timestamp_assigner takes a function of the record returning epoch milliseconds, "
                f"or a TimestampAssigner; got {type(assigner).__name__}"
            )
        return replace(self, assigner=_CallableAssigner(assigner))

    def with_idleness(self, idle_timeout: Any) -> WatermarkStrategy:
        """Marks an input idle after ``idle_timeout`` ms (or a timedelta) without records."""
        timeout = _duration_ms(idle_timeout, "idle_timeout")
        if timeout == 0:
            raise ConfigError("with_idleness needs a timeout > 0 ms")
        return replace(self, idle_timeout_ms=timeout)

    def create_generator(self, clock: Callable[[], float] = time.monotonic) -> WatermarkGenerator:
        """A fresh generator for one split (``clock`` in seconds, injected by tests)."""
        inner: WatermarkGenerator = (
            NoWatermarks() if self.kind == "none" else BoundedOutOfOrdernessWatermarks(self.bound_ms)
        )
        if self.idle_timeout_ms is not None:
            return IdlenessTracker(inner, self.idle_timeout_ms, clock)
        return inner

    def record_timestamp_function(self) -> Callable[[Any], int]:
        """A one-argument function giving a record's timestamp (the assigner's; operators call it per record)."""
        assigner = self.assigner
        if isinstance(assigner, _CallableAssigner) and not assigner.two_args:
            return assigner.fn  # the user's function itself: no wrapper call per record
        return lambda value: self.timestamp_of(value, None)

    def timestamp_of(self, value: Any, record_timestamp: int | None) -> int:
        """The event timestamp of ``value``: the assigner's, else the timestamp the source gave it."""
        if self.assigner is not None:
            return self.assigner.extract_timestamp(value, record_timestamp)
        if record_timestamp is None:
            raise ConfigError(
                "this WatermarkStrategy has no timestamp assigner and the source gives records no timestamp: "
                "add .with_timestamp_assigner(lambda record: record.timestamp_ms)"
            )
        return record_timestamp


__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "BoundedOutOfOrdernessWatermarks",
    "IdlenessTracker",
    "NoWatermarks",
    "TimestampAssigner",
    "WatermarkGenerator",
    "WatermarkStrategy",
]
