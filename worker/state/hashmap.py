"""The hashmap keyed state backend: state as live Python objects in one flat dict per state.

The fastest backend, bounded by memory (Flink's ``HashMapStateBackend``). Key groups are not
computed on the per-record path: a state's table is ``dict[key, value]`` and keys are bucketed
into key groups only when a snapshot is encoded. The synchronous part of a snapshot is a shallow
copy of each table (``dict.copy()``, copy-on-write protects shared objects); encoding runs in the
background part, and value, reducing and aggregating states are encoded as columns (one msgpack
call per key group and state instead of one serializer call per key, ``columns.py``): the
background part then holds the GIL for a few milliseconds rather than tens.
With ``incremental=True`` writes record their key in a dirty set (one ``set.add``); a checkpoint
writes, per chunk holding a dirty key, a delta of just those keys (``chunks.py``: chunk chains),
or the whole chunk when its chain is due for compaction.

Recovery contract: see ``backend.py``. Restored entries stay encoded until their descriptor
registers, then are decoded with that descriptor's serializer.

Callers: ``create_keyed_backend("hashmap", ctx)``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

from streamjob.worker.errors import PipelineError, RestoreError, SerializationError
from streamjob.worker.state.backend import KeyedBackendContext
from streamjob.worker.state.chunks import Chunk, ColumnData, Entry, RestoredGroup, StateBlock, column_block
from streamjob.worker.state.columns import column_kind, decode_values, encode_keys, encode_values
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.direct_map import DirectMap, copy_map_table
from streamjob.worker.state.hashmap_states import (
    HashAggregatingState,
    HashListState,
    HashMapStateImpl,
    HashReducingState,
    HashStateBase,
    HashTable,
    HashValueState,
    QuietHashValueState,
    TtlSweep,
)
from streamjob.worker.state.key_groups import canonical_key
from streamjob.worker.state.keyed_base import FrozenKeyedState, GroupFor, KeyedBackendBase
from streamjob.worker.state.primitives import State
from streamjob.worker.state.serializers import Serializer
from streamjob.worker.state.ttl import StateTtlConfig, alive_from

_SCALAR_KINDS = frozenset({"value", "reducing", "aggregating"})
# Encoding work per preparation step (snapshot_runner.py): roughly 0.2-0.5 ms each.
_STEP_KEYS = 4096
_STEP_GROUPS = 16
_STEP_ENTRIES = 1024


@dataclass(slots=True)
class _FrozenTable:
    name: str
    kind: str
    serializer: Serializer
    data: dict[Any, Any]
    alive_from_ms: int | None  # full-snapshot cleanup of a TTL state: keep TtlValues with ts >= this


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
    """Copies of the tables taken at a barrier, encoded later in steps on the task thread."""

    on_task_thread = True

    def __init__(
        self,
        metas: dict[str, tuple[str, str]],
        tables: list[_FrozenTable],
        raw: dict[str, list[tuple[int, StateBlock]]],
        lookup: Callable[[Any], int],
        on_release: Callable[[], None],
    ) -> None:
        super().__init__(metas)
        self._tables = tables
        self._raw = raw
        self.delta_states = frozenset(table.name for table in tables)  # restored raw states are not covered
        self._lookup = lookup
        self._on_release = _Once(on_release)
        weakref.finalize(self, self._on_release)  # a snapshot that is never written still ends

    def release(self) -> None:
        self._on_release()

    def fill(self, chunks: list[Chunk], group_for: GroupFor) -> None:
        for _ in self.fill_steps(chunks, group_for):
            pass

    def fill_steps(self, chunks: list[Chunk], group_for: GroupFor) -> Iterator[None]:
        """Encodes every table into its key groups, a few thousand entries per step (no I/O)."""
        for table in self._tables:
            try:
                yield from self._fill_table(table, group_for)
            except SerializationError as exc:
                raise SerializationError(f"state {table.name!r}: {exc}") from exc
        for name, blocks in self._raw.items():  # restored, not registered yet: written back as read
            for key_group, block in blocks:
                group = group_for(key_group)
                if group is None:
                    continue
                if isinstance(block, ColumnData):
                    keys = encode_keys(block.keys, column_kind(block.keys))
                    group.columns[name] = column_block(keys, block.values, block.written)
                else:
                    group.states.setdefault(name, []).extend(block)

    def fill_keys(self, keys: set[Any], group_for: GroupFor) -> None:
        """The entries of ``keys`` in every table (a delta; no preparation steps: a few keys)."""
        for table in self._tables:
            data = table.data
            part = {key: data[key] for key in keys if key in data}
            if not part:
                continue
            subset = _FrozenTable(table.name, table.kind, table.serializer, part, table.alive_from_ms)
            try:
                for _ in self._fill_table(subset, group_for):
                    pass
            except SerializationError as exc:
                raise SerializationError(f"state {table.name!r}: {exc}") from exc

    def _fill_table(self, table: _FrozenTable, group_for: GroupFor) -> Iterator[None]:
        """Encodes one table's entries into their key groups."""
        if table.kind in _SCALAR_KINDS:
            yield from self._fill_columns(table, group_for)
            return
        lookup = self._lookup
        name, encode, alive = table.name, table.serializer.encode, table.alive_from_ms
        is_map = table.kind == "map"
        encode_key = _map_key_encoder(encode)
        for index, (key, value) in enumerate(table.data.items(), 1):
            if not index % _STEP_ENTRIES:
                yield
            group = group_for(lookup(key))
            if group is None:
                continue
            if is_map:
                pairs = value.items() if alive is None else [(k, v) for k, v in value.items() if v.ts >= alive]
                entry: Entry = [key, [[encode_key(k), encode(v)] for k, v in pairs]]
            else:
                items = value if alive is None else [item for item in value if item.ts >= alive]
                entry = [key, [encode(item) for item in items]]
            if not entry[1]:
                continue
            entries = group.states.get(name)
            if entries is None:
                group.states[name] = [entry]
            else:
                entries.append(entry)

    def _fill_columns(self, table: _FrozenTable, group_for: GroupFor) -> Iterator[None]:
        """A scalar table as one key column and one value column per key group.

        The one loop per key only buckets; type checks and encoding run in C per column.
        """
        lookup, data, alive = self._lookup, table.data, table.alive_from_ms
        items: Iterable[tuple[Any, Any]] = data.items()
        if alive is not None:
            items = [(key, value) for key, value in items if value.ts >= alive]
        buckets: dict[int, tuple[list[Any], list[Any]]] = {}
        get = buckets.get
        source = iter(items)
        while True:
            step = list(islice(source, _STEP_KEYS))
            for key, value in step:
                key_group = lookup(key)
                bucket = get(key_group)
                if bucket is None:
                    buckets[key_group] = ([key], [value])
                else:
                    bucket[0].append(key)
                    bucket[1].append(value)
            if len(step) < _STEP_KEYS:
                break
            yield
        if not buckets:
            return
        serializer = table.serializer
        key_kind = column_kind(data.keys())
        value_kind = column_kind(data.values()) if serializer.plain_columns else None
        yield
        for index, (key_group, (keys, values)) in enumerate(buckets.items(), 1):
            group = group_for(key_group)
            if group is None:
                continue
            group.columns[table.name] = column_block(
                encode_keys(keys, key_kind), encode_values(values, serializer, value_kind), None
            )
            if not index % _STEP_GROUPS:
                yield


def _map_key_encoder(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """``encode(canonical_key(k))`` for a map state's user keys, remembered for pairs of ints.

    The user keys of a window state are ``(start, end)`` spans, the same few for every key: each
    is encoded once per snapshot instead of once per key and window.
    """
    spans: dict[tuple[int, int], bytes] = {}

    def encode_key(k: Any) -> bytes:
        if type(k) is tuple and len(k) == 2 and type(k[0]) is int and type(k[1]) is int:
            data = spans.get(k)
            if data is None:
                data = spans[k] = encode(k)  # a pair of ints is its own canonical key
            return data
        return encode(canonical_key(k))

    return encode_key


class HashMapKeyedStateBackend(KeyedBackendBase):
    """Keyed state in Python dicts; see the module docstring."""

    def __init__(self, ctx: KeyedBackendContext) -> None:
        super().__init__(ctx)
        self._tables: dict[str, HashTable] = {}
        self._raw: dict[str, list[tuple[int, StateBlock]]] = {}
        self._mark: Callable[[Any], None] | None = self._tracker.dirty.add if self._tracker is not None else None
        self._inflight = 0  # snapshots sharing objects with the tables (copy-on-write while > 0)
        # reentrant: a collection run while it is held may release a snapshot (weakref.finalize)
        self._inflight_lock = threading.RLock()
        self._value_states: list[HashValueState] = []  # switched to the quiet class while _inflight == 0

    def _mark_dirty(self, key: Any) -> None:
        if self._mark is not None:
            self._mark(key)  # keys are resolved to chunks in the background part of a snapshot

    # -- states ------------------------------------------------------------------------------

    def _create_state(self, descriptor: StateDescriptor) -> State:
        table = HashTable(descriptor=descriptor, data={})
        try:
            self._decode_into(table, self._raw.pop(descriptor.name, []))
        except SerializationError as exc:
            raise RestoreError(
                f"operator {self._ctx.operator_uid!r}: state {descriptor.name!r} cannot be restored: {exc}"
            ) from exc
        self._tables[descriptor.name] = table
        mark = self._mark
        if isinstance(descriptor, ValueStateDescriptor):
            with self._inflight_lock:
                cls = HashValueState if self._inflight else QuietHashValueState
                value_state = cls(self, table, descriptor, mark)
                self._value_states.append(value_state)
            return value_state
        if isinstance(descriptor, ListStateDescriptor):
            return HashListState(self, table, mark)
        if isinstance(descriptor, MapStateDescriptor):
            return HashMapStateImpl(self, table, mark)
        if isinstance(descriptor, ReducingStateDescriptor):
            return HashReducingState(self, table, descriptor, mark)
        if isinstance(descriptor, AggregatingStateDescriptor):
            return HashAggregatingState(self, table, descriptor, mark)
        raise PipelineError(f"unsupported state descriptor {type(descriptor).__name__}")

    def _decode_into(self, table: HashTable, blocks: list[tuple[int, StateBlock]]) -> None:
        for key_group, block in blocks:
            if isinstance(block, ColumnData):
                self._decode_columns(table, key_group, block)
            else:
                self._decode_rows(table, block)

    def _decode_rows(self, table: HashTable, rows: list[Entry]) -> None:
        decode = table.descriptor.serializer.decode
        data = table.data
        if table.descriptor.kind == "map":
            for key, pairs in rows:
                data[key] = {decode(k): decode(v) for k, v in pairs}
            return
        if table.descriptor.kind == "list":
            for key, items in rows:
                data[key] = [decode(item) for item in items]
            return
        for entry in rows:
            data[entry[0]] = decode(entry[1])

    def _decode_columns(self, table: HashTable, key_group: int, block: ColumnData) -> None:
        descriptor = table.descriptor
        where = f"operator {self._ctx.operator_uid!r} state {descriptor.name!r} key group {key_group}"
        if descriptor.kind not in _SCALAR_KINDS:
            raise RestoreError(f"{where}: {descriptor.kind} state cannot be restored from columns")
        values = decode_values(block.values, descriptor.serializer, where)
        if len(values) != len(block.keys):
            raise RestoreError(f"{where}: {len(block.keys)} keys but {len(values)} values")
        table.data.update(zip(block.keys, values, strict=True))

    def keys(self, descriptor: StateDescriptor) -> list[Any]:
        """The keys of the state's table (registering it decodes what was restored)."""
        self._get_state(descriptor)
        return list(self._tables[descriptor.name].data)

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
        if descriptor.ttl_config is not None:
            return self._value_accessors_of(state)
        table = self._tables[descriptor.name]
        data = table.data
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

    def direct_map(self, descriptor: MapStateDescriptor[Any, Any]) -> DirectMap | None:
        """The map state's table (``direct_map.py``); None for a state with a time-to-live."""
        self._get_state(descriptor)
        if descriptor.ttl_config is not None or descriptor.kind != "map":
            return None
        table = self._tables[descriptor.name]
        table.copy_at_freeze = True
        return DirectMap(table.data, self._mark)

    def _ttl_sweep(self, stored: StateDescriptor, config: StateTtlConfig) -> Callable[[], None] | None:
        """Incremental cleanup: every access checks the next ``cleanup_size`` keys of the state."""
        size = config.cleanup_strategies.incremental_size
        if not size:
            return None
        table = self._tables[stored.name]
        return TtlSweep(table.data, table.copied, stored.kind, config.ttl_ms, self._ctx.clock, size, self._mark)

    # -- snapshot / restore ------------------------------------------------------------------

    def _freeze(self) -> FrozenKeyedState:
        now_ms = int(self._ctx.clock() * 1000)
        tables: list[_FrozenTable] = []
        for name, table in self._tables.items():
            table.copied.clear()  # every stored object is shared with this snapshot again
            kind = table.descriptor.kind
            # a table changed in place by its direct user is copied whole (direct_map.py); lists and
            # maps of the others are shared, copy-on-write (hashmap_states.py)
            data = copy_map_table(table.data) if table.copy_at_freeze else table.data.copy()
            config = self._ttl_configs.get(name)
            cleanup = config is not None and config.cleanup_strategies.full_snapshot
            tables.append(
                _FrozenTable(
                    name=name,
                    kind=kind,
                    serializer=table.descriptor.serializer,
                    data=data,
                    alive_from_ms=alive_from(config, now_ms) if cleanup and config is not None else None,
                )
            )
        raw = {name: rows.copy() for name, rows in self._raw.items()}
        with self._inflight_lock:
            self._inflight += 1
            if self._inflight == 1:
                self._switch_value_states(HashValueState)
        return _FrozenHashMap(self._metas(), tables, raw, self._assigner.lookup, self._snapshot_released)

    def _snapshot_released(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1
            if self._inflight == 0:
                self._switch_value_states(QuietHashValueState)

    def _switch_value_states(self, cls: type[HashValueState]) -> None:
        """Value states check for snapshots in flight (copy-on-write) only while there are any.

        Called under ``_inflight_lock`` when the count leaves or returns to zero (the release may
        come from the writing thread: a read running meanwhile finishes with the class it started).
        """
        for state in self._value_states:
            state.__class__ = cls

    def _load_group(self, group: RestoredGroup) -> None:
        for name, block in group.states.items():
            blocks = [(group.key_group, block)]
            table = self._tables.get(name)
            if table is not None:
                self._decode_into(table, blocks)
            else:
                self._raw.setdefault(name, []).extend(blocks)

    def close(self) -> None:
        """Drops every table and timer."""
        self._tables.clear()
        self._raw.clear()
        self._timers.clear()
        self._event_timers.clear()
        self._registered.clear()
        self._value_states.clear()
        self._closed = True


__all__ = ["HashMapKeyedStateBackend"]
