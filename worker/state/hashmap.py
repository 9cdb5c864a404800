"""The hashmap keyed state backend: state as live Python objects in one flat dict per state.

The fastest backend, bounded by memory (Flink's ``HashMapStateBackend``). Key groups are not
computed on the per-record path: a state's table is ``dict[key, value]`` and keys are bucketed
into key groups only when a snapshot is encoded. The synchronous part of a snapshot is a shallow
copy of each table (``dict.copy()``, copy-on-write protects shared objects); encoding runs in the
background part.
With ``incremental=True`` writes record their key in a dirty set (one ``set.add``), and only
chunks holding a dirty key are re-encoded and uploaded.

Recovery contract: see ``backend.py``. Restored entries stay encoded until their descriptor
registers, then are decoded with that descriptor's serializer.

Callers: ``create_keyed_backend("hashmap", ctx)``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from streamjob.worker.errors import PipelineError, SerializationError
from streamjob.worker.state.backend import KeyedBackendContext
from streamjob.worker.state.chunks import Chunk, Entry, RestoredGroup
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.hashmap_states import (
    HashAggregatingState,
    HashListState,
    HashMapStateImpl,
    HashReducingState,
    HashStateBase,
    HashTable,
    HashTtlValueState,
    HashValueState,
)
from streamjob.worker.state.key_groups import canonical_key
from streamjob.worker.state.keyed_base import FrozenKeyedState, GroupFor, KeyedBackendBase
from streamjob.worker.state.primitives import State
from streamjob.worker.state.serializers import Serializer

_SCALAR_KINDS = frozenset({"value", "reducing", "aggregating"})


@dataclass(slots=True)
class _FrozenTable:
    name: str
    kind: str
    serializer: Serializer
    data: dict[Any, Any]
    written: dict[Any, int] | None
    expire_before_ms: int | None


class _Once:
    """Calls a function at most once (from ``release`` or from the garbage collector)."""

    __slots__ = ("_fn", "_lock")

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class _FrozenHashMap(FrozenKeyedState):
    """Copies of the tables taken at a barrier, encoded later in the background."""

    def __init__(
        self,
        metas: dict[str, tuple[str, str]],
        tables: list[_FrozenTable],
        raw: dict[str, list[tuple[int, Entry]]],
        lookup: Callable[[Any], int],
        on_release: Callable[[], None],
    ) -> None:
        super().__init__(metas)
        self._tables = tables
        self._raw = raw
        self._lookup = lookup
        self._on_release = _Once(on_release)
        weakref.finalize(self, self._on_release)  # a snapshot that is never written still ends

    def release(self) -> None:
        self._on_release()

    def fill(self, chunks: list[Chunk], group_for: GroupFor) -> None:
        for table in self._tables:
            try:
                self._fill_table(table, group_for)
            except SerializationError as exc:
                raise SerializationError(f"state {table.name!r}: {exc}") from exc
        for name, rows in self._raw.items():
            for key_group, entry in rows:
                group = group_for(key_group)
                if group is not None:
                    group.states.setdefault(name, []).append(entry)

    def _fill_table(self, table: _FrozenTable, group_for: GroupFor) -> None:
        """Encodes one table's entries into their key groups."""
        lookup = self._lookup
        name, encode, written = table.name, table.serializer.encode, table.written
        is_map, is_list = table.kind == "map", table.kind == "list"
        for key, value in table.data.items():
            group = group_for(lookup(key))
            if group is None:
                continue
            if is_map:
                entry: Entry = [key, [[encode(canonical_key(k)), encode(v)] for k, v in value.items()]]
            elif is_list:
                entry = [key, [encode(item) for item in value]]
            elif written is not None:
                at = written.get(key, 0)
                if table.expire_before_ms is not None and at < table.expire_before_ms:
                    continue
                entry = [key, encode(value), at]
            else:
                entry = [key, encode(value)]
            entries = group.states.get(name)
            if entries is None:
                group.states[name] = [entry]
            else:
                entries.append(entry)


class HashMapKeyedStateBackend(KeyedBackendBase):
    """Keyed state in Python dicts; see the module docstring."""

    def __init__(self, ctx: KeyedBackendContext) -> None:
        super().__init__(ctx)
        self._tables: dict[str, HashTable] = {}
        self._raw: dict[str, list[tuple[int, Entry]]] = {}
        self._mark: Callable[[Any], None] | None = self._tracker.dirty.add if self._tracker is not None else None
        self._inflight = 0  # snapshots sharing objects with the tables (copy-on-write while > 0)
        self._inflight_lock = threading.Lock()

    def _mark_dirty(self, key: Any) -> None:
        if self._mark is not None:
            self._mark(key)  # keys are resolved to chunks in the background part of a snapshot

    # -- states ------------------------------------------------------------------------------

    def _create_state(self, descriptor: StateDescriptor) -> State:
        table = HashTable(descriptor=descriptor, data={})
        if isinstance(descriptor, ValueStateDescriptor) and descriptor.ttl_ms is not None:
            table.written = {}
        self._decode_into(table, self._raw.pop(descriptor.name, []))
        self._tables[descriptor.name] = table
        mark = self._mark
        if isinstance(descriptor, ValueStateDescriptor):
            if table.written is not None:
                return HashTtlValueState(self, table, descriptor, mark, self._ctx.clock)
            return HashValueState(self, table, descriptor, mark)
        if isinstance(descriptor, ListStateDescriptor):
            return HashListState(self, table, mark)
        if isinstance(descriptor, MapStateDescriptor):
            return HashMapStateImpl(self, table, mark)
        if isinstance(descriptor, ReducingStateDescriptor):
            return HashReducingState(self, table, descriptor, mark)
        if isinstance(descriptor, AggregatingStateDescriptor):
            return HashAggregatingState(self, table, descriptor, mark)
        raise PipelineError(f"unsupported state descriptor {type(descriptor).__name__}")

    def _decode_into(self, table: HashTable, rows: list[tuple[int, Entry]]) -> None:
        decode = table.descriptor.serializer.decode
        data, written = table.data, table.written
        now_ms = int(self._ctx.clock() * 1000)
        if table.descriptor.kind == "map":
            for _, (key, pairs) in rows:
                data[key] = {decode(k): decode(v) for k, v in pairs}
            return
        if table.descriptor.kind == "list":
            for _, (key, items) in rows:
                data[key] = [decode(item) for item in items]
            return
        for _, entry in rows:
            data[entry[0]] = decode(entry[1])
            if written is not None:
                written[entry[0]] = int(entry[2]) if len(entry) > 2 else now_ms

    def get_value_accessors(
        self, descriptor: StateDescriptor, *, mutable_values: bool = False
    ) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
        """``(table.get, table.__setitem__)``; a put also records the key when incremental."""
        state = self._get_state(descriptor)
        if descriptor.kind not in _SCALAR_KINDS:
            raise PipelineError(
                f"value accessors exist for value, reducing and aggregating state, not {descriptor.kind} "
                f"state {descriptor.name!r}"
            )
        table = self._tables[descriptor.name]
        data = table.data
        if table.written is not None:
            return self._ttl_accessors(table)
        mark = self._mark
        get: Callable[[Any], Any] = data.get
        if mutable_values:
            private = cast(HashStateBase, state)._private

            def get(key: Any) -> Any:
                value = data.get(key)
                if value is not None and self._inflight:
                    return private(key, value)
                return value

        if mark is None:
            return get, data.__setitem__

        def put(key: Any, value: Any) -> None:
            data[key] = value
            mark(key)

        return get, put

    def _ttl_accessors(self, table: HashTable) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
        data, written, clock = table.data, table.written or {}, self._ctx.clock
        ttl = getattr(table.descriptor, "ttl_ms", 0) or 0
        mark = self._mark

        def get(key: Any) -> Any:
            if key in data and int(clock() * 1000) - written.get(key, 0) >= ttl:
                return None
            return data.get(key)

        def put(key: Any, value: Any) -> None:
            data[key] = value
            written[key] = int(clock() * 1000)
            if mark is not None:
                mark(key)

        return get, put

    # -- snapshot / restore ------------------------------------------------------------------

    def _freeze(self) -> FrozenKeyedState:
        now_ms = int(self._ctx.clock() * 1000)
        tables: list[_FrozenTable] = []
        for name, table in self._tables.items():
            table.copied.clear()  # every stored object is shared with this snapshot again
            kind = table.descriptor.kind
            data = table.data.copy()  # lists and maps too: copy-on-write (hashmap_states.py)
            ttl = getattr(table.descriptor, "ttl_ms", None)
            tables.append(
                _FrozenTable(
                    name=name,
                    kind=kind,
                    serializer=table.descriptor.serializer,
                    data=data,
                    written=None if table.written is None else table.written.copy(),
                    expire_before_ms=None if ttl is None else now_ms - ttl + 1,
                )
            )
        raw = {name: rows.copy() for name, rows in self._raw.items()}
        with self._inflight_lock:
            self._inflight += 1
        return _FrozenHashMap(self._metas(), tables, raw, self._assigner.lookup, self._snapshot_released)

    def _snapshot_released(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    def _load_group(self, group: RestoredGroup) -> None:
        for name, entries in group.states.items():
            rows = [(group.key_group, entry) for entry in entries]
            table = self._tables.get(name)
            if table is not None:
                self._decode_into(table, rows)
            else:
                self._raw.setdefault(name, []).extend(rows)

    def close(self) -> None:
        """Drops every table and timer."""
        self._tables.clear()
        self._raw.clear()
        self._timers.clear()
        self._event_timers.clear()
        self._registered.clear()
        self._closed = True


__all__ = ["HashMapKeyedStateBackend"]
