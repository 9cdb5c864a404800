"""Joins of two streams: the event-time interval join and the window join / co-group.

- **Interval join** (``a.key_by(ka).interval_join(b.key_by(kb)).between(lower, upper).process(f)``):
  a left record with timestamp ``t`` meets every right record of the same key whose timestamp lies
  in ``[t + lower, t + upper]`` (bounds inclusive unless ``lower_bound_exclusive()`` /
  ``upper_bound_exclusive()``), whichever arrives first; ``f.process_element(left, right, ctx, out)``
  runs once per pair. A two-input keyed operator (``runtime/join_operators.py``) buffers each side
  per key and timestamp and drops a buffered record once the watermark says no partner can come.
  As in Flink, a record older than the operator's watermark is late and dropped.
- **Window join** (``a.join(b).where(ka).equal_to(kb).window(assigner).apply(f)``) and **co-group**:
  built from the other operators as Flink builds them: each input is tagged, the tagged inputs are
  united and keyed by their own key selectors, windowed, and a window function pairs each window's
  records of both sides (the cross product for a join; both lists for a co-group). Windows of every
  kind the assigner offers work, with the windows' semantics and checkpointing.

Callers: ``DataStream.join``/``co_group``, ``KeyedStream.interval_join``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamjob.worker.api.co_functions import CoGroupFunction, FlatJoinFunction, ProcessJoinFunction
from streamjob.worker.api.connected import (
    ConnectableStream,
    SideKey,
    key_selector_of,
    tag_input,
    tagged_strategy,
    two_input,
)
from streamjob.worker.api.functions import Collector
from streamjob.worker.api.stamped import event_time_of
from streamjob.worker.api.windows import ProcessWindowFunction, WindowAssigner, WindowContext
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.transformations import Partitioning


def _bound_ms(value: Any, what: str) -> int:
    seconds = getattr(value, "total_seconds", None)
    ms = int(seconds() * 1000) if callable(seconds) else value
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise ConfigError(f"{what} must be milliseconds (an int, may be negative) or a timedelta, got {value!r}")
    return ms


class IntervalJoin:
    """``left.interval_join(right)``: give the interval with ``between``."""

    def __init__(self, left: ConnectableStream, right: ConnectableStream) -> None:
        if key_selector_of(left) is None or key_selector_of(right) is None:
            raise PipelineError("interval_join joins two keyed streams: a.key_by(ka).interval_join(b.key_by(kb))")
        if getattr(right, "env", None) is not left.env:
            raise PipelineError("interval_join() needs two streams of the same StreamExecutionEnvironment")
        self.left = left
        self.right = right

    def between(self, lower: Any, upper: Any) -> IntervalJoined:
        """Right timestamps in ``[left + lower, left + upper]`` (milliseconds or timedeltas, lower <= upper)."""
        lo, hi = _bound_ms(lower, "between(lower, ...)"), _bound_ms(upper, "between(..., upper)")
        if lo > hi:
            raise ConfigError(f"interval_join: between(lower={lo}, upper={hi}) needs lower <= upper")
        return IntervalJoined(self.left, self.right, lo, hi)


class IntervalJoined:
    """An interval join with its bounds; finish it with ``process(ProcessJoinFunction)``."""

    def __init__(self, left: ConnectableStream, right: ConnectableStream, lower: int, upper: int) -> None:
        self.left, self.right = left, right
        self.lower, self.upper = lower, upper
        self._lower_exclusive = False
        self._upper_exclusive = False

    def lower_bound_exclusive(self) -> IntervalJoined:
        """Right timestamps must be strictly above ``left + lower``."""
        self._lower_exclusive = True
        return self

    def upper_bound_exclusive(self) -> IntervalJoined:
        """Right timestamps must be strictly below ``left + upper``."""
        self._upper_exclusive = True
        return self

    def process(self, func: ProcessJoinFunction[Any, Any, Any]) -> Any:
        """Calls ``func.process_element(left, right, ctx, out)`` once per pair that meets."""
        if not isinstance(func, ProcessJoinFunction):
            raise ConfigError(f"interval_join(...).process takes a ProcessJoinFunction, got {type(func).__name__}")
        left, right = self.left, self.right
        if event_time_of(left) is None or event_time_of(right) is None:
            raise ConfigError(
                "interval_join is event time: call assign_timestamps_and_watermarks(WatermarkStrategy...) on both "
                "streams before key_by(...)"
            )
        lower = self.lower + (1 if self._lower_exclusive else 0)
        upper = self.upper - (1 if self._upper_exclusive else 0)
        if lower > upper:
            raise ConfigError(f"interval_join: the exclusive bounds leave no interval ({self.lower}, {self.upper})")
        env = left.env
        inputs = [tag_input(left, 0), tag_input(right, 1)]
        return two_input(
            left,
            inputs,
            "IntervalJoin",
            func,
            SideKey(key_selector_of(left), key_selector_of(right)),
            co_kind="interval_join",
            timestamps=(event_time_of(left), event_time_of(right)),
            lower_ms=lower,
            upper_ms=upper,
            state_serializer=lambda: env.internal_state_serializer,
        )


class _Sides:
    """``a.join(b)`` / ``a.co_group(b)``: ``where(key of a)``, ``equal_to(key of b)``, ``window(assigner)``."""

    _what = "join"

    def __init__(self, first: ConnectableStream, second: ConnectableStream) -> None:
        if getattr(second, "env", None) is not first.env:
            raise PipelineError(f"{self._what}() needs two streams of the same StreamExecutionEnvironment")
        self.first, self.second = first, second
        self._key1: Any = None
        self._key2: Any = None

    def where(self, key_selector: Any) -> _Sides:
        """The key of the first stream's records."""
        self._key1 = _selector(key_selector, f"{self._what}(...).where")
        return self

    def equal_to(self, key_selector: Any) -> _Sides:
        """The key of the second stream's records (pairs have equal keys)."""
        if self._key1 is None:
            raise PipelineError(f"{self._what}(...): call where(...) before equal_to(...)")
        self._key2 = _selector(key_selector, f"{self._what}(...).equal_to")
        return self

    def window(self, assigner: WindowAssigner) -> WindowedSides:
        """The windows whose records are paired."""
        if self._key1 is None or self._key2 is None:
            raise PipelineError(f"{self._what}(...): call where(...).equal_to(...) before window(...)")
        return WindowedSides(self, assigner)


def _selector(selector: Any, what: str) -> Any:
    if hasattr(selector, "get_key"):
        return selector.get_key
    if not callable(selector):
        raise ConfigError(f"{what} takes a key selector function, got {selector!r}")
    return selector


class JoinedStreams(_Sides):
    """``a.join(b)``: an inner join of the records of equal keys in each window."""


class CoGroupedStreams(_Sides):
    """``a.co_group(b)``: each key's and window's records of both streams, together."""

    _what = "co_group"


def _tagged(stream: ConnectableStream, side: int) -> Any:
    edge = tag_input(stream, side, Partitioning.FORWARD)
    return stream._derive(stream.env.transformations[edge.source_id - 1])


class WindowedSides:
    """A join or co-group with its windows; finish it with ``apply``."""

    def __init__(self, sides: _Sides, assigner: WindowAssigner) -> None:
        if not isinstance(assigner, WindowAssigner):
            raise ConfigError(f"window() takes a WindowAssigner, got {type(assigner).__name__}")
        first, second = sides.first, sides.second
        strategy = tagged_strategy(event_time_of(first), event_time_of(second))
        if assigner.is_event_time and strategy is None:
            raise ConfigError(
                f"{type(assigner).__name__} needs event timestamps on both streams of the {sides._what}: call "
                "assign_timestamps_and_watermarks(WatermarkStrategy...) on each (after its last map/process)"
            )
        self.sides = sides
        self.assigner = assigner
        self._strategy = strategy

    def apply(self, func: Any) -> Any:
        """Pairs each window's records of both streams with ``func``.

        A join takes a ``JoinFunction``, a ``FlatJoinFunction`` or a function ``(first, second) -> out``;
        a co-group a ``CoGroupFunction`` or a function ``(firsts, seconds, out)``.
        """
        if isinstance(self.sides, CoGroupedStreams):
            co_group = func.co_group if isinstance(func, CoGroupFunction) else func
            if not callable(co_group):
                raise ConfigError("co_group(...).apply takes a CoGroupFunction or a function (firsts, seconds, out)")
            window_function: ProcessWindowFunction[Any, Any, Any] = _CoGroupWindow(co_group)
        else:
            join = func.join if hasattr(func, "join") else func
            if not callable(join):
                raise ConfigError("join(...).apply takes a JoinFunction, a FlatJoinFunction or a function (a, b)")
            window_function = _JoinWindow(join, isinstance(func, FlatJoinFunction))
        first, second = self.sides.first, self.sides.second
        united = _tagged(first, 0).union(_tagged(second, 1))
        united._timestamps = self._strategy
        keyed = united.key_by(SideKey(self.sides._key1, self.sides._key2))
        name = "Join" if isinstance(self.sides, JoinedStreams) else "CoGroup"
        return keyed.window(self.assigner).process(window_function).name(name)


def _split(elements: Iterable[tuple[int, Any]]) -> tuple[list[Any], list[Any]]:
    firsts: list[Any] = []
    seconds: list[Any] = []
    for side, value in elements:
        (seconds if side else firsts).append(value)
    return firsts, seconds


class _JoinWindow(ProcessWindowFunction[Any, Any, Any]):
    """Every pair (first, second) of one key's window, firsts in arrival order, then seconds."""

    def __init__(self, join: Any, flat: bool) -> None:
        self.join, self.flat = join, flat

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Collector[Any]) -> None:
        firsts, seconds = _split(elements)
        join, collect = self.join, out.collect
        for a in firsts:
            for b in seconds:
                if self.flat:
                    join(a, b, out)
                else:
                    collect(join(a, b))


class _CoGroupWindow(ProcessWindowFunction[Any, Any, Any]):
    """Both sides' records of one key's window."""

    def __init__(self, co_group: Any) -> None:
        self.co_group = co_group

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Collector[Any]) -> None:
        firsts, seconds = _split(elements)
        self.co_group(firsts, seconds, out)


__all__ = [
    "CoGroupedStreams",
    "IntervalJoin",
    "IntervalJoined",
    "JoinedStreams",
    "WindowedSides",
]
