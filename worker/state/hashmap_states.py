"""The hashmap backend's state objects: one flat ``dict[key, value]`` per state.

Each state reads and writes its table at the backend's current key; values are live Python
objects (no serialization until a snapshot). ``mark`` is the backend's dirty-key recorder when
incremental snapshots are on, else None. Lists and maps are copied on read (``get()``,
``keys()``...) so that callers cannot change state behind the backend's back; write them back.

Recovery contract: see ``primitives.py`` and ``backend.py``.

Callers: ``hashmap.py`` (creates them in ``get_state``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.primitives import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

MISSING: Final = object()
Mark = Callable[[Any], None] | None


class KeyHolder(Protocol):
    """What a state needs from its backend: the current key, as attribute ``_key``."""

    _key: Any


class HashValueState(ValueState[Any]):
    """``ValueState`` over a dict."""

    __slots__ = ("_b", "_default", "_mark", "_table")

    def __init__(self, backend: KeyHolder, table: dict[Any, Any], descriptor: ValueStateDescriptor[Any], mark: Mark):
        self._b = backend
        self._table = table
        self._default = descriptor.default_value
        self._mark = mark

    def value(self) -> Any:
        """The current key's value or the default."""
        value = self._table.get(self._b._key, MISSING)
        if value is MISSING:
            return self._default()
        return value

    def update(self, value: Any) -> None:
        """Sets (or, with None, clears) the current key's value."""
        key = self._b._key
        if value is None:
            self._table.pop(key, None)
        else:
            self._table[key] = value
        if self._mark is not None:
            self._mark(key)

    def clear(self) -> None:
        """Removes the current key's value."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashTtlValueState(HashValueState):
    """``ValueState`` with a time-to-live since the last write."""

    __slots__ = ("_clock", "_ttl_ms", "_written")

    def __init__(
        self,
        backend: KeyHolder,
        tables: tuple[dict[Any, Any], dict[Any, int]],
        descriptor: ValueStateDescriptor[Any],
        mark: Mark,
        clock: Callable[[], float],
    ):
        super().__init__(backend, tables[0], descriptor, mark)
        self._written = tables[1]
        self._clock = clock
        self._ttl_ms = descriptor.ttl_ms or 0

    def value(self) -> Any:
        """The value, unless it expired (then the default, and the value is dropped)."""
        key = self._b._key
        value = self._table.get(key, MISSING)
        if value is MISSING:
            return self._default()
        if int(self._clock() * 1000) - self._written.get(key, 0) >= self._ttl_ms:
            self.clear()
            return self._default()
        return value

    def update(self, value: Any) -> None:
        """Sets the value and restarts its time-to-live."""
        super().update(value)
        if value is None:
            self._written.pop(self._b._key, None)
        else:
            self._written[self._b._key] = int(self._clock() * 1000)

    def clear(self) -> None:
        """Removes the value."""
        super().clear()
        self._written.pop(self._b._key, None)


class HashListState(ListState[Any]):
    """``ListState`` over a dict of lists (empty lists are removed)."""

    __slots__ = ("_b", "_mark", "_table")

    def __init__(self, backend: KeyHolder, table: dict[Any, list[Any]], mark: Mark):
        self._b = backend
        self._table = table
        self._mark = mark

    def get(self) -> list[Any]:
        """A copy of the current key's elements."""
        stored = self._table.get(self._b._key)
        return [] if stored is None else stored.copy()

    def add(self, value: Any) -> None:
        """Appends one element."""
        key = self._b._key
        stored = self._table.get(key)
        if stored is None:
            self._table[key] = [value]
        else:
            stored.append(value)
        if self._mark is not None:
            self._mark(key)

    def add_all(self, values: Iterable[Any]) -> None:
        """Appends elements."""
        items = list(values)
        if not items:
            return
        key = self._b._key
        stored = self._table.get(key)
        if stored is None:
            self._table[key] = items
        else:
            stored.extend(items)
        if self._mark is not None:
            self._mark(key)

    def update(self, values: Iterable[Any]) -> None:
        """Replaces the elements."""
        key = self._b._key
        items = list(values)
        if items:
            self._table[key] = items
        else:
            self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)

    def clear(self) -> None:
        """Removes every element."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashMapStateImpl(MapState[Any, Any]):
    """``MapState`` over a dict of dicts (empty maps are removed)."""

    __slots__ = ("_b", "_mark", "_table")

    def __init__(self, backend: KeyHolder, table: dict[Any, dict[Any, Any]], mark: Mark):
        self._b = backend
        self._table = table
        self._mark = mark

    def _map(self) -> dict[Any, Any]:
        return self._table.get(self._b._key) or {}

    def _writable(self) -> dict[Any, Any]:
        key = self._b._key
        stored = self._table.get(key)
        if stored is None:
            stored = self._table[key] = {}
        if self._mark is not None:
            self._mark(key)
        return stored

    def get(self, key: Any) -> Any:
        """The value of a user key, or None."""
        stored = self._table.get(self._b._key)
        return None if stored is None else stored.get(key)

    def put(self, key: Any, value: Any) -> None:
        """Sets a user key."""
        self._writable()[key] = value

    def put_all(self, entries: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        """Sets several user keys."""
        items = dict(entries)
        if items:
            self._writable().update(items)

    def contains(self, key: Any) -> bool:
        """Whether the user key is present."""
        return key in self._map()

    def remove(self, key: Any) -> None:
        """Removes a user key."""
        owner = self._b._key
        stored = self._table.get(owner)
        if stored is None or key not in stored:
            return
        del stored[key]
        if not stored:
            del self._table[owner]
        if self._mark is not None:
            self._mark(owner)

    def keys(self) -> list[Any]:
        """The user keys."""
        return list(self._map())

    def values(self) -> list[Any]:
        """The values."""
        return list(self._map().values())

    def items(self) -> list[tuple[Any, Any]]:
        """The entries."""
        return list(self._map().items())

    def is_empty(self) -> bool:
        """Whether the map is empty."""
        return not self._table.get(self._b._key)

    def clear(self) -> None:
        """Removes the whole map of the current key."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashReducingState(ReducingState[Any]):
    """``ReducingState`` over a dict."""

    __slots__ = ("_b", "_mark", "_reduce", "_table")

    def __init__(self, backend: KeyHolder, table: dict[Any, Any], descriptor: ReducingStateDescriptor[Any], mark: Mark):
        self._b = backend
        self._table = table
        self._reduce = descriptor.reduce
        self._mark = mark

    def get(self) -> Any:
        """The reduced value, or None."""
        return self._table.get(self._b._key)

    def add(self, value: Any) -> None:
        """Folds a value in."""
        key = self._b._key
        current = self._table.get(key, MISSING)
        self._table[key] = value if current is MISSING else self._reduce(current, value)
        if self._mark is not None:
            self._mark(key)

    def clear(self) -> None:
        """Removes the value."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashAggregatingState(AggregatingState[Any, Any]):
    """``AggregatingState`` over a dict of accumulators."""

    __slots__ = ("_b", "_fn", "_mark", "_table")

    def __init__(
        self,
        backend: KeyHolder,
        table: dict[Any, Any],
        descriptor: AggregatingStateDescriptor[Any, Any, Any],
        mark: Mark,
    ):
        self._b = backend
        self._table = table
        self._fn = descriptor.aggregate_function
        self._mark = mark

    def get(self) -> Any:
        """The result of the current accumulator, or None."""
        acc = self._table.get(self._b._key, MISSING)
        return None if acc is MISSING else self._fn.get_result(acc)

    def add(self, value: Any) -> None:
        """Adds a value to the accumulator."""
        key = self._b._key
        acc = self._table.get(key, MISSING)
        if acc is MISSING:
            acc = self._fn.create_accumulator()
        self._table[key] = self._fn.add(value, acc)
        if self._mark is not None:
            self._mark(key)

    def clear(self) -> None:
        """Removes the accumulator."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


__all__ = [
    "MISSING",
    "HashAggregatingState",
    "HashListState",
    "HashMapStateImpl",
    "HashReducingState",
    "HashTtlValueState",
    "HashValueState",
    "KeyHolder",
]
