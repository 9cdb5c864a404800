"""TTL states: the five keyed state kinds with a time-to-live, on top of either backend's states.

A TTL state wraps the backend's state of the same name and kind, whose descriptor
(``inner_descriptor``) stores ``TtlValue(value, ts)`` through a ``TtlSerializer``; the wrapper
stamps writes with the backend clock's time, hides or returns expired values per the state
visibility, refreshes timestamps on reads with ``OnReadAndWrite`` and removes what it finds
expired (Flink's ``AbstractTtlDecorator`` semantics). Reducing and aggregating states fold
through wrapped functions that carry the timestamp along. Expiry: ``ts + ttl_ms <= now``.

Recovery contract: as the wrapped state's (``primitives.py``); the timestamps are part of the
stored values, so a restored value keeps the age it had.

Callers: ``keyed_base.py`` (``get_state`` of a descriptor with ``ttl_config``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.functions import AggregateFunction
from streamjob.worker.state.primitives import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    State,
    ValueState,
)
from streamjob.worker.state.ttl import StateTtlConfig, StateVisibility, TtlSerializer, TtlValue, UpdateType

Clock = Callable[[], int]  # epoch milliseconds
Sweep = Callable[[], None]


class _Replace:
    """An input of the wrapped aggregate function that sets the accumulator (refreshing its timestamp)."""

    __slots__ = ("acc",)

    def __init__(self, acc: TtlValue) -> None:
        self.acc = acc


class _TtlAggregate(AggregateFunction[Any, TtlValue, TtlValue]):
    """The user's AggregateFunction over ``TtlValue`` accumulators; ``get_result`` returns the accumulator."""

    def __init__(self, fn: Any, now: Clock) -> None:
        self.fn = fn
        self.now = now

    def create_accumulator(self) -> TtlValue:
        return TtlValue(self.fn.create_accumulator(), self.now())

    def add(self, value: Any, accumulator: TtlValue) -> TtlValue:
        if type(value) is _Replace:
            return value.acc
        return TtlValue(self.fn.add(value, accumulator.value), self.now())

    def get_result(self, accumulator: TtlValue) -> TtlValue:
        return accumulator

    def merge(self, a: TtlValue, b: TtlValue) -> TtlValue:
        return TtlValue(self.fn.merge(a.value, b.value), max(a.ts, b.ts))


def inner_descriptor(descriptor: StateDescriptor, now: Clock) -> StateDescriptor:
    """The descriptor of the stored state behind a TTL state (same name and kind, TTL bytes)."""
    serializer = TtlSerializer(descriptor.serializer)
    if isinstance(descriptor, ValueStateDescriptor):
        return ValueStateDescriptor(descriptor.name, serializer=serializer)
    if isinstance(descriptor, ListStateDescriptor):
        return ListStateDescriptor(descriptor.name, serializer=serializer)
    if isinstance(descriptor, MapStateDescriptor):
        return MapStateDescriptor(descriptor.name, serializer=serializer)
    if isinstance(descriptor, ReducingStateDescriptor):
        reduce = descriptor.reduce

        def reduce_ttl(a: TtlValue, b: TtlValue) -> TtlValue:
            return TtlValue(reduce(a.value, b.value), b.ts)

        return ReducingStateDescriptor(descriptor.name, reduce_ttl, serializer=serializer)
    if isinstance(descriptor, AggregatingStateDescriptor):
        return AggregatingStateDescriptor(
            descriptor.name, _TtlAggregate(descriptor.aggregate_function, now), serializer=serializer
        )
    raise TypeError(f"no TTL state for {type(descriptor).__name__}")


class _TtlState:
    """What every TTL state shares: the config's decisions and the optional sweep."""

    __slots__ = ("_inner", "_now", "_on_read", "_return_expired", "_sweep", "_ttl")

    def __init__(self, inner: Any, config: StateTtlConfig, now: Clock, sweep: Sweep | None) -> None:
        self._inner = inner
        self._now = now
        self._ttl = config.ttl_ms
        self._on_read = config.update_type is UpdateType.OnReadAndWrite
        self._return_expired = config.state_visibility is StateVisibility.ReturnExpiredIfNotCleanedUp
        self._sweep = sweep

    def _expired(self, stored: TtlValue, now: int) -> bool:
        return stored.ts + self._ttl <= now

    def _swept(self) -> None:
        if self._sweep is not None:
            self._sweep()

    def clear(self) -> None:
        """Removes the current key's value."""
        self._inner.clear()
        self._swept()


class TtlValueState(_TtlState, ValueState[Any]):
    """``ValueState`` with a time-to-live."""

    __slots__ = ("_default",)

    def __init__(
        self, inner: ValueState[Any], descriptor: ValueStateDescriptor[Any], now: Clock, sweep: Sweep | None
    ) -> None:
        assert descriptor.ttl_config is not None
        super().__init__(inner, descriptor.ttl_config, now, sweep)
        self._default = descriptor.default_value

    def value(self) -> Any:
        """The value; an expired one is the default (and removed) unless expired values may be returned."""
        self._swept()
        stored = self._inner.value()
        if stored is None:
            return self._default()
        now = self._now()
        if self._expired(stored, now) and not self._return_expired:
            self._inner.clear()
            return self._default()
        if self._on_read:
            self._inner.update(TtlValue(stored.value, now))
        return stored.value

    def update(self, value: Any) -> None:
        """Sets the value (None clears it) and restarts its time-to-live."""
        self._swept()
        if value is None:
            self._inner.clear()
        else:
            self._inner.update(TtlValue(value, self._now()))


class TtlListState(_TtlState, ListState[Any]):
    """``ListState`` whose elements each have a time-to-live."""

    __slots__ = ()

    def get(self) -> list[Any]:
        """The elements that are not expired (or all stored ones, if expired ones may be returned)."""
        self._swept()
        stored: list[TtlValue] = self._inner.get()
        if not stored:
            return []
        now = self._now()
        kept = stored if self._return_expired else [item for item in stored if not self._expired(item, now)]
        if self._on_read:
            self._inner.update([TtlValue(item.value, now) for item in kept])
        elif len(kept) != len(stored):
            self._inner.update(kept)
        return [item.value for item in kept]

    def add(self, value: Any) -> None:
        """Appends one element."""
        self._swept()
        self._inner.add(TtlValue(value, self._now()))

    def add_all(self, values: Iterable[Any]) -> None:
        """Appends elements."""
        self._swept()
        now = self._now()
        self._inner.add_all([TtlValue(value, now) for value in values])

    def update(self, values: Iterable[Any]) -> None:
        """Replaces the elements."""
        self._swept()
        now = self._now()
        self._inner.update([TtlValue(value, now) for value in values])


class TtlMapState(_TtlState, MapState[Any, Any]):
    """``MapState`` whose entries each have a time-to-live."""

    __slots__ = ()

    def _live(self, key: Any, stored: TtlValue | None, now: int) -> TtlValue | None:
        """``stored`` as visible now (None if expired and hidden), refreshed on read if configured."""
        if stored is None:
            return None
        if self._expired(stored, now) and not self._return_expired:
            self._inner.remove(key)
            return None
        if self._on_read:
            stored = TtlValue(stored.value, now)
            self._inner.put(key, stored)
        return stored

    def get(self, key: Any) -> Any:
        """The value of a user key, or None (also when expired and hidden)."""
        self._swept()
        live = self._live(key, self._inner.get(key), self._now())
        return None if live is None else live.value

    def put(self, key: Any, value: Any) -> None:
        """Sets a user key and restarts its time-to-live."""
        self._swept()
        self._inner.put(key, TtlValue(value, self._now()))

    def put_all(self, entries: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        """Sets several user keys."""
        self._swept()
        now = self._now()
        self._inner.put_all({key: TtlValue(value, now) for key, value in dict(entries).items()})

    def contains(self, key: Any) -> bool:
        """Whether the user key has a visible value."""
        self._swept()
        return self._live(key, self._inner.get(key), self._now()) is not None

    def remove(self, key: Any) -> None:
        """Removes a user key."""
        self._swept()
        self._inner.remove(key)

    def items(self) -> list[tuple[Any, Any]]:
        """The visible entries."""
        self._swept()
        now = self._now()
        out: list[tuple[Any, Any]] = []
        for key, stored in self._inner.items():
            live = self._live(key, stored, now)
            if live is not None:
                out.append((key, live.value))
        return out

    def keys(self) -> list[Any]:
        """The user keys with visible values."""
        return [key for key, _ in self.items()]

    def values(self) -> list[Any]:
        """The visible values."""
        return [value for _, value in self.items()]

    def is_empty(self) -> bool:
        """Whether no entry is visible."""
        return not self.items()


class TtlReducingState(_TtlState, ReducingState[Any]):
    """``ReducingState`` with a time-to-live since the last ``add`` (or read, with ``OnReadAndWrite``)."""

    __slots__ = ()

    def _current(self, now: int) -> TtlValue | None:
        stored: TtlValue | None = self._inner.get()
        if stored is not None and self._expired(stored, now) and not self._return_expired:
            self._inner.clear()
            return None
        return stored

    def get(self) -> Any:
        """The reduced value, or None when absent or expired and hidden."""
        self._swept()
        now = self._now()
        stored = self._current(now)
        if stored is None:
            return None
        if self._on_read:
            self._inner.clear()
            self._inner.add(TtlValue(stored.value, now))
        return stored.value

    def add(self, value: Any) -> None:
        """Folds a value in (into nothing if the current value expired and is hidden)."""
        self._swept()
        now = self._now()
        self._current(now)
        self._inner.add(TtlValue(value, now))


class TtlAggregatingState(_TtlState, AggregatingState[Any, Any]):
    """``AggregatingState`` whose accumulator has a time-to-live since the last ``add``."""

    __slots__ = ("_fn",)

    def __init__(
        self, inner: Any, descriptor: AggregatingStateDescriptor[Any, Any, Any], now: Clock, sweep: Sweep | None
    ):
        assert descriptor.ttl_config is not None
        super().__init__(inner, descriptor.ttl_config, now, sweep)
        self._fn = descriptor.aggregate_function

    def _current(self, now: int) -> TtlValue | None:
        stored: TtlValue | None = self._inner.get()
        if stored is not None and self._expired(stored, now) and not self._return_expired:
            self._inner.clear()
            return None
        return stored

    def get(self) -> Any:
        """The result of the accumulator, or None when absent or expired and hidden."""
        self._swept()
        now = self._now()
        stored = self._current(now)
        if stored is None:
            return None
        if self._on_read:
            self._inner.add(_Replace(TtlValue(stored.value, now)))
        return self._fn.get_result(stored.value)

    def add(self, value: Any) -> None:
        """Adds a value to the accumulator (a new one if the current one expired and is hidden)."""
        self._swept()
        self._current(self._now())
        self._inner.add(value)


def wrap(state: State, descriptor: StateDescriptor, now: Clock, sweep: Sweep | None) -> State:
    """The TTL state of ``descriptor`` over the backend's ``state`` of ``inner_descriptor``."""
    config = descriptor.ttl_config
    assert config is not None
    if isinstance(descriptor, ValueStateDescriptor):
        return TtlValueState(state, descriptor, now, sweep)  # type: ignore[arg-type]
    if isinstance(descriptor, ListStateDescriptor):
        return TtlListState(state, config, now, sweep)
    if isinstance(descriptor, MapStateDescriptor):
        return TtlMapState(state, config, now, sweep)
    if isinstance(descriptor, ReducingStateDescriptor):
        return TtlReducingState(state, config, now, sweep)
    if isinstance(descriptor, AggregatingStateDescriptor):
        return TtlAggregatingState(state, descriptor, now, sweep)
    raise TypeError(f"no TTL state for {type(descriptor).__name__}")


__all__ = [
    "TtlAggregatingState",
    "TtlListState",
    "TtlMapState",
    "TtlReducingState",
    "TtlValueState",
    "inner_descriptor",
    "wrap",
]
