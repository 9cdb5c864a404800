"""The hashmap backend's state objects: one flat ``dict[key, value]`` per state.

Each state reads and writes its table at the backend's current key; values are live Python
objects (no serialization until a snapshot). ``mark`` is the backend's dirty-key recorder when
incremental snapshots are on, else None. Lists are copied on read so that callers cannot change
state behind the backend's back; write them back.

Copy-on-write keeps asynchronous snapshots isolated: a snapshot is a shallow copy of each table
(``dict.copy()``, also for list and map state) and shares the stored objects, so while one is
being written (``backend._inflight``), the first access of a key that may lead to an in-place
mutation (``value()``, a reducer or accumulator, any list or map access) replaces the live
object (or the live list/dict and its mutable elements) by a copy; the snapshot keeps the
original. Immutable scalars are never copied. Value states make no check per read while no
snapshot is in flight: the backend switches them to ``QuietHashValueState`` then. The raw
``get_value_accessors`` fast path does not copy: its users must not mutate stored values in
place (build new values instead).

Recovery contract: see ``primitives.py`` and ``backend.py``.

Callers: ``hashmap.py`` (creates them in ``get_state``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
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
IMMUTABLE_TYPES: Final = frozenset(
    {int, float, complex, str, bytes, bool, type(None), tuple, frozenset, Decimal, date, datetime, time, timedelta}
)
Mark = Callable[[Any], None] | None


class KeyHolder(Protocol):
    """What a state needs from its backend: the current key and the in-flight snapshot count."""

    _key: Any
    _inflight: int


@dataclass(slots=True)
class HashTable:
    """One registered state's storage."""

    descriptor: StateDescriptor
    data: dict[Any, Any] = field(default_factory=dict)
    copied: set[Any] = field(default_factory=set)  # keys made private since the last snapshot
    copy_at_freeze: bool = False  # a snapshot copies the table whole (its values may change in place: direct_map.py)


class HashStateBase:
    """Shared by every hashmap state: its table, dirty marking and copy-on-write helpers."""

    __slots__ = ("_b", "_copied", "_mark", "_table")

    def __init__(self, backend: KeyHolder, table: HashTable, mark: Mark) -> None:
        self._b = backend
        self._table: dict[Any, Any] = table.data
        self._copied = table.copied
        self._mark = mark

    def _private(self, key: Any, value: Any) -> Any:
        """``value``, replaced in the table by a deep copy if a snapshot may still share it."""
        if type(value) in IMMUTABLE_TYPES or key in self._copied:
            return value
        value = copy.deepcopy(value)
        self._table[key] = value
        self._copied.add(key)
        return value

    def _private_container(self, key: Any, container: Any) -> Any:
        """A private copy of a list or dict a snapshot may share (mutable elements deep-copied)."""
        if key in self._copied:
            return container
        deepcopy = copy.deepcopy
        if isinstance(container, list):
            container = [item if type(item) in IMMUTABLE_TYPES else deepcopy(item) for item in container]
        else:
            container = {k: v if type(v) in IMMUTABLE_TYPES else deepcopy(v) for k, v in container.items()}
        self._table[key] = container
        self._copied.add(key)
        return container

    def _replaced(self, key: Any) -> None:
        """The key's container was replaced by a new object: no snapshot shares it."""
        if self._b._inflight:
            self._copied.add(key)

    def clear(self) -> None:
        """Removes the current key's value."""
        key = self._b._key
        self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashValueState(HashStateBase, ValueState[Any]):
    """``ValueState`` over a dict."""

    __slots__ = ("_default",)

    def __init__(self, backend: KeyHolder, table: HashTable, descriptor: ValueStateDescriptor[Any], mark: Mark):
        super().__init__(backend, table, mark)
        self._default = descriptor.default_value

    def value(self) -> Any:
        """The current key's value or the default."""
        key = self._b._key
        value = self._table.get(key, MISSING)
        if value is MISSING:
            return self._default()
        if self._b._inflight:
            return self._private(key, value)
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


class QuietHashValueState(HashValueState):
    """``HashValueState`` while no snapshot is in flight: ``value()`` needs no copy-on-write check.

    The backend switches a value state's class between the two when its count of snapshots in
    flight leaves or returns to zero (``HashMapKeyedStateBackend._switch_value_states``), so the record path
    pays no check per read; the layout is the same (no slots of its own).
    """

    __slots__ = ()

    def value(self) -> Any:
        """The current key's value or the default."""
        value = self._table.get(self._b._key, MISSING)
        if value is MISSING:
            return self._default()
        return value


class TtlSweep:
    """Incremental TTL cleanup of one table: each call checks the next ``size`` keys and drops what expired.

    Walks a list of the table's keys taken when the previous walk ended (new keys wait for the
    next walk). Values are ``TtlValue`` (per element for lists, per entry for maps); a container
    left empty is removed. A removal replaces the container rather than mutating it, so a
    snapshot sharing it is unaffected.
    """

    __slots__ = ("_clock", "_copied", "_data", "_kind", "_mark", "_pending", "_size", "_ttl")

    def __init__(
        self,
        data: dict[Any, Any],
        copied: set[Any],
        kind: str,
        ttl_ms: int,
        clock: Callable[[], float],
        size: int,
        mark: Mark,
    ) -> None:
        self._data = data
        self._copied = copied
        self._kind = kind
        self._ttl = ttl_ms
        self._clock = clock
        self._size = size
        self._mark = mark
        self._pending: list[Any] = []

    def __call__(self) -> None:
        """Checks the next keys."""
        pending = self._pending
        if not pending:
            pending.extend(self._data)
            pending.reverse()
            if not pending:
                return
        alive = int(self._clock() * 1000) - self._ttl + 1
        data, kind = self._data, self._kind
        for _ in range(min(self._size, len(pending))):
            key = pending.pop()
            stored = data.get(key)
            if stored is None:
                continue
            if kind == "list":
                kept: Any = [item for item in stored if item.ts >= alive]
            elif kind == "map":
                kept = {k: v for k, v in stored.items() if v.ts >= alive}
            else:
                kept = stored if stored.ts >= alive else None
            if kept is stored or (kept is not None and len(kept) == len(stored)):
                continue
            if kept:
                data[key] = kept
                self._copied.discard(key)
            else:
                del data[key]
            if self._mark is not None:
                self._mark(key)


class HashListState(HashStateBase, ListState[Any]):
    """``ListState`` over a dict of lists (empty lists are removed)."""

    __slots__ = ()

    def _live(self, key: Any) -> list[Any] | None:
        stored: list[Any] | None = self._table.get(key)
        if stored is not None and self._b._inflight:
            stored = self._private_container(key, stored)
        return stored

    def get(self) -> list[Any]:
        """A copy of the current key's elements."""
        stored = self._live(self._b._key)
        return [] if stored is None else stored.copy()

    def add(self, value: Any) -> None:
        """Appends one element."""
        key = self._b._key
        stored = self._live(key)
        if stored is None:
            self._table[key] = [value]
            self._replaced(key)
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
        stored = self._live(key)
        if stored is None:
            self._table[key] = items
            self._replaced(key)
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
            self._replaced(key)
        else:
            self._table.pop(key, None)
        if self._mark is not None:
            self._mark(key)


class HashMapStateImpl(HashStateBase, MapState[Any, Any]):
    """``MapState`` over a dict of dicts (empty maps are removed)."""

    __slots__ = ()

    def _live(self, key: Any) -> dict[Any, Any] | None:
        stored: dict[Any, Any] | None = self._table.get(key)
        if stored is not None and self._b._inflight:
            stored = self._private_container(key, stored)
        return stored

    def _writable(self) -> dict[Any, Any]:
        key = self._b._key
        stored = self._live(key)
        if stored is None:
            stored = self._table[key] = {}
            self._replaced(key)
        if self._mark is not None:
            self._mark(key)
        return stored

    def get(self, key: Any) -> Any:
        """The value of a user key, or None."""
        stored = self._live(self._b._key)
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
        stored = self._table.get(self._b._key)
        return stored is not None and key in stored

    def remove(self, key: Any) -> None:
        """Removes a user key."""
        owner = self._b._key
        stored = self._table.get(owner)
        if stored is None or key not in stored:
            return
        if len(stored) == 1:
            del self._table[owner]
        else:
            live = self._live(owner)
            if live is not None:
                del live[key]
        if self._mark is not None:
            self._mark(owner)

    def keys(self) -> list[Any]:
        """The user keys."""
        return list(self._table.get(self._b._key) or ())

    def values(self) -> list[Any]:
        """The values."""
        stored = self._live(self._b._key)
        return [] if stored is None else list(stored.values())

    def items(self) -> list[tuple[Any, Any]]:
        """The entries."""
        stored = self._live(self._b._key)
        return [] if stored is None else list(stored.items())

    def is_empty(self) -> bool:
        """Whether the map is empty."""
        return not self._table.get(self._b._key)


class HashReducingState(HashStateBase, ReducingState[Any]):
    """``ReducingState`` over a dict."""

    __slots__ = ("_reduce",)

    def __init__(self, backend: KeyHolder, table: HashTable, descriptor: ReducingStateDescriptor[Any], mark: Mark):
        super().__init__(backend, table, mark)
        self._reduce = descriptor.reduce

    def get(self) -> Any:
        """The reduced value, or None."""
        key = self._b._key
        value = self._table.get(key)
        if value is not None and self._b._inflight:
            return self._private(key, value)
        return value

    def add(self, value: Any) -> None:
        """Folds a value in."""
        key = self._b._key
        current = self._table.get(key, MISSING)
        if current is MISSING:
            self._table[key] = value
        else:
            if self._b._inflight:
                current = self._private(key, current)
            self._table[key] = self._reduce(current, value)
        if self._mark is not None:
            self._mark(key)


class HashAggregatingState(HashStateBase, AggregatingState[Any, Any]):
    """``AggregatingState`` over a dict of accumulators."""

    __slots__ = ("_fn",)

    def __init__(
        self,
        backend: KeyHolder,
        table: HashTable,
        descriptor: AggregatingStateDescriptor[Any, Any, Any],
        mark: Mark,
    ):
        super().__init__(backend, table, mark)
        self._fn = descriptor.aggregate_function

    def get(self) -> Any:
        """The result of the current accumulator, or None."""
        key = self._b._key
        acc = self._table.get(key, MISSING)
        if acc is MISSING:
            return None
        if self._b._inflight:
            acc = self._private(key, acc)
        return self._fn.get_result(acc)

    def add(self, value: Any) -> None:
        """Adds a value to the accumulator."""
        key = self._b._key
        acc = self._table.get(key, MISSING)
        if acc is MISSING:
            acc = self._fn.create_accumulator()
        elif self._b._inflight:
            acc = self._private(key, acc)
        self._table[key] = self._fn.add(value, acc)
        if self._mark is not None:
            self._mark(key)


__all__ = [
    "IMMUTABLE_TYPES",
    "HashStateBase",
    "MISSING",
    "HashTable",
    "HashAggregatingState",
    "HashListState",
    "HashMapStateImpl",
    "HashReducingState",
    "TtlSweep",
    "HashValueState",
    "KeyHolder",
    "QuietHashValueState",
]
