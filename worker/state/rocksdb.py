"""The rocksdb keyed state backend: state in a local RocksDB (``rocksdict``), beyond memory.

Flink's ``EmbeddedRocksDBStateBackend`` in Python: every state is rows in one RocksDB under
``ctx.local_dir`` (raw bytes mode, write-ahead log off: durability comes from checkpoints), laid
out so that a key group is a contiguous key range (see ``rocksdb_states.py``). Timers live in
memory, as with the hashmap backend.

Snapshots: the synchronous part creates a RocksDB checkpoint (flush + hard links, no copy of
data) next to the database; the background part opens it read-only, scans the chunks to write
and encodes them in the common chunk format, then deletes it. With ``incremental=True`` every
write records its key (``incremental.py``); a changed chunk is written as a delta of those keys'
rows (point scans of the checkpoint) or whole when its chain is due for compaction (``chunks.py``). The file format
is the hashmap backend's, so savepoints move between the two backends.

Recovery contract: see ``backend.py``. Restored rows are written to the database as they are
(serializer bytes); they are decoded only by the states of registered descriptors.

Callers: ``create_keyed_backend("rocksdb", ctx)``.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, cast

from rocksdict import AccessType, Checkpoint, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from streamjob.worker.errors import PipelineError, SerializationError
from streamjob.worker.state.backend import KeyedBackendContext
from streamjob.worker.state.chunks import Chunk, Entry, RestoredGroup, block_rows
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.direct_rows import DirectRows
from streamjob.worker.state.incremental import ChunkMark
from streamjob.worker.state.key_groups import canonical_key, unsupported_key_message
from streamjob.worker.state.keyed_base import FrozenKeyedState, GroupFor, KeyedBackendBase
from streamjob.worker.state.primitives import State
from streamjob.worker.state.rocksdb_states import (
    KeyEntry,
    RocksAggregatingState,
    RocksListState,
    RocksMapStateImpl,
    RocksReducingState,
    RocksValueState,
    join_frames,
    prefix_end,
    split_frames,
)
from streamjob.worker.state.serializers import KEY_SERIALIZER
from streamjob.worker.state.ttl import StateTtlConfig, alive_from, stored_ts

_SCALAR_KINDS: Final = frozenset({"value", "reducing", "aggregating"})
_KEY_CACHE_LIMIT: Final = 1 << 16
_MAX_KEY_BYTES: Final = 0xFFFF


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_max_background_jobs(2)
    options.set_write_buffer_size(16 << 20)  # several backends share a worker process
    return options


class _KeyCache(dict[Any, KeyEntry]):
    """Key -> (key-group bytes, length-prefixed key bytes, the key as a mark); filled on a miss, bounded.

    The chunk is looked up on a miss only to refuse a key routed to the wrong subtask at once.
    """

    def __init__(self, key_group: Callable[[Any], int], chunk_of: Callable[[int], Chunk]) -> None:
        super().__init__()
        self._key_group = key_group
        self._chunk_of = chunk_of

    def __missing__(self, key: Any) -> KeyEntry:
        group = self._key_group(key)
        self._chunk_of(group)
        entry = (group.to_bytes(2, "big"), encode_key(key), key)
        if len(self) >= _KEY_CACHE_LIMIT:
            self.clear()
        self[key] = entry
        return entry


def encode_key(key: Any) -> bytes:
    """The length-prefixed bytes of a canonical key (equal keys, equal bytes)."""
    try:
        data = KEY_SERIALIZER.encode(canonical_key(key))
    except SerializationError:
        raise PipelineError(unsupported_key_message(key)) from None
    if len(data) > _MAX_KEY_BYTES:
        raise PipelineError(f"a key encodes to {len(data)} bytes; keys must stay under 64 KiB")
    return len(data).to_bytes(2, "big") + data


class _FrozenRocks(FrozenKeyedState):
    """A RocksDB checkpoint directory, scanned in the background and then deleted."""

    def __init__(
        self,
        metas: dict[str, tuple[str, str]],
        path: Path,
        names: dict[bytes, str],
        alive_from_ms: dict[str, int],
        lookup: Callable[[Any], int],
    ) -> None:
        super().__init__(metas)
        self._path = path
        self._names = names
        self._alive = alive_from_ms  # full-snapshot TTL cleanup: state name -> oldest timestamp kept
        self._lookup = lookup
        self.delta_states = frozenset(names.values())

    def fill(self, chunks: list[Chunk], group_for: GroupFor) -> None:
        db = Rdict(str(self._path), _options(), access_type=AccessType.read_only())
        try:
            for start, end in chunks:
                self._scan(db, start, end, group_for)
        finally:
            db.close()

    def fill_keys(self, keys: set[Any], group_for: GroupFor) -> None:
        """The rows of ``keys`` in every state (a delta): one prefix scan per key and state."""
        db = Rdict(str(self._path), _options(), access_type=AccessType.read_only())
        try:
            for key in keys:
                key_group = self._lookup(key)
                head = key_group.to_bytes(2, "big")
                key_bytes = encode_key(key)
                for sid in self._names:
                    prefix = head + sid + key_bytes
                    self._scan_rows(db, prefix, prefix_end(prefix), group_for)
        finally:
            db.close()

    def _scan(self, db: Rdict, start: int, end: int, group_for: GroupFor) -> None:
        upper = (end + 1).to_bytes(2, "big") if end < 0xFFFF else b"\xff\xff\xff"
        self._scan_rows(db, start.to_bytes(2, "big"), upper, group_for)

    def _scan_rows(self, db: Rdict, lower: bytes, upper: bytes, group_for: GroupFor) -> None:
        options = ReadOptions()
        options.set_iterate_upper_bound(upper)
        decode_key = KEY_SERIALIZER.decode
        current: tuple[bytes, bytes] | None = None  # (state id + key bytes) of the open map entry
        pairs: list[list[bytes]] = []
        rows = cast(Iterable[tuple[bytes, bytes]], db.items(from_key=lower, read_opt=options))
        for row, raw in rows:
            group = group_for(int.from_bytes(row[:2], "big"))
            if group is None:
                continue
            name = self._names.get(row[2:4])
            if name is None:
                continue
            length = int.from_bytes(row[4:6], "big")
            key_bytes = row[6 : 6 + length]
            kind = self.metas[name][0]
            alive = self._alive.get(name)
            if alive is not None and kind != "list" and (stored_ts(raw) or 0) < alive:
                continue
            entries = group.states.setdefault(name, [])
            if kind == "map":
                marker = (row[:4], key_bytes)
                if marker != current:
                    current, pairs = marker, []
                    entries.append([decode_key(key_bytes), pairs])
                pairs.append([row[6 + length :], raw])
                continue
            current = None
            entry: Entry = [decode_key(key_bytes), raw]
            if kind == "list":
                items = split_frames(raw)
                if alive is not None:
                    items = [item for item in items if (stored_ts(item) or 0) >= alive]
                    if not items:
                        continue
                entry[1] = items
            entries.append(entry)

    def release(self) -> None:
        shutil.rmtree(self._path, ignore_errors=True)


class RocksDBKeyedStateBackend(KeyedBackendBase):
    """Keyed state in a local RocksDB; see the module docstring."""

    def __init__(self, ctx: KeyedBackendContext) -> None:
        super().__init__(ctx)
        self._root = ctx.local_dir / f"rocksdb-{uuid.uuid4().hex[:12]}"
        self._root.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self._root / "db"), _options())
        write_options = WriteOptions()
        write_options.disable_wal = True  # type: ignore[method-assign,assignment]  # a property (stub is wrong)
        self._db.set_write_options(write_options)
        self._dirty: set[Any] | None = self._tracker.dirty if self._tracker is not None else None
        self._kc: dict[Any, KeyEntry] = _KeyCache(self._kg, self.chunk_of)
        self._sids: dict[str, bytes] = {}
        self._snapshots = 0
        self._lock = threading.Lock()

    @property
    def operator_uid(self) -> str:
        """The operator whose state this is."""
        return self._ctx.operator_uid

    def _mark_dirty(self, key: Any) -> None:
        if self._dirty is not None:
            self._dirty.add(self._kc[key][2])  # the key (validated once by the cache)

    def _sid(self, name: str) -> bytes:
        sid = self._sids.get(name)
        if sid is None:
            if len(self._sids) >= 0xFFFF:
                raise PipelineError(f"operator {self._ctx.operator_uid!r}: too many states")
            sid = self._sids[name] = (len(self._sids) + 1).to_bytes(2, "big")
        return sid

    # -- states ------------------------------------------------------------------------------

    def _create_state(self, descriptor: StateDescriptor) -> State:
        sid = self._sid(descriptor.name)
        db = self._db
        if isinstance(descriptor, ValueStateDescriptor):
            return RocksValueState(self, db, sid, descriptor)
        if isinstance(descriptor, ListStateDescriptor):
            return RocksListState(self, db, sid, descriptor)
        if isinstance(descriptor, MapStateDescriptor):
            return RocksMapStateImpl(self, db, sid, descriptor)
        if isinstance(descriptor, ReducingStateDescriptor):
            return RocksReducingState(self, db, sid, descriptor)
        if isinstance(descriptor, AggregatingStateDescriptor):
            return RocksAggregatingState(self, db, sid, descriptor)
        raise PipelineError(f"unsupported state descriptor {type(descriptor).__name__}")

    def _ttl_sweep(self, stored: StateDescriptor, config: StateTtlConfig) -> Callable[[], None] | None:
        """The RocksDB stand-in for Flink's compaction filter: each access checks the next rows of the state."""
        strategies = config.cleanup_strategies
        size = strategies.rocksdb_compact_filter_entries or strategies.incremental_size
        if not size:
            return None
        sid, db, ttl, clock = self._sid(stored.name), self._db, config.ttl_ms, self._ctx.clock
        low, high = self._ctx.key_group_range
        is_list = stored.kind == "list"
        cursor: list[Any] = [low, None]  # key group, last row checked

        def sweep() -> None:
            alive = int(clock() * 1000) - ttl + 1
            left = size
            batch = WriteBatch(raw_mode=True)
            while left > 0:
                group, after = cursor
                prefix = group.to_bytes(2, "big") + sid
                options = ReadOptions()
                options.set_iterate_upper_bound(prefix_end(prefix))
                rows = cast(Iterable[tuple[bytes, bytes]], db.items(from_key=after or prefix, read_opt=options))
                for row, raw in rows:
                    if row == after:
                        continue
                    cursor[1] = row
                    left -= 1
                    if is_list:
                        items = split_frames(raw)
                        kept = [item for item in items if (stored_ts(item) or 0) >= alive]
                        if len(kept) != len(items):
                            self._swept(batch, group, row, join_frames(kept) if kept else None)
                    elif (stored_ts(raw) or alive) < alive:
                        self._swept(batch, group, row, None)
                    if left <= 0:
                        break
                else:
                    cursor[0], cursor[1] = (group + 1 if group < high else low), None
                    if cursor[0] == low:
                        break  # one pass over the whole range per call at most
            db.write(batch)

        return sweep

    def _swept(self, batch: WriteBatch, group: int, row: bytes, data: bytes | None) -> None:
        """Queues a cleaned row (None: delete it) and marks its chunk changed."""
        if data is None:
            batch.delete(row)
        else:
            batch.put(row, data)
        if self._dirty is not None:
            self._dirty.add(ChunkMark(self.chunk_of(group)))

    def keys(self, descriptor: StateDescriptor) -> list[Any]:
        """The keys with rows of the state: one prefix scan per key group of this backend."""
        self._get_state(descriptor)
        sid = self._sid(descriptor.name)
        low, high = self._ctx.key_group_range
        decode = KEY_SERIALIZER.decode
        keys: list[Any] = []
        for group in range(low, high + 1):
            prefix = group.to_bytes(2, "big") + sid
            options = ReadOptions()
            options.set_iterate_upper_bound(prefix_end(prefix))
            last = b""
            for row in cast(Iterable[bytes], self._db.keys(from_key=prefix, read_opt=options)):
                length = int.from_bytes(row[4:6], "big")
                key_bytes = row[6 : 6 + length]
                if key_bytes != last:  # a map state has one row per user key: rows of a key are adjacent
                    last = key_bytes
                    keys.append(decode(key_bytes))
        return keys

    def get_value_accessors(
        self, descriptor: StateDescriptor, *, mutable_values: bool = False
    ) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
        """Closures reading and writing a key's row directly (values are always fresh copies)."""
        state = self._get_state(descriptor)
        if descriptor.kind not in _SCALAR_KINDS:
            raise PipelineError(
                f"value accessors exist for value, reducing and aggregating state, not {descriptor.kind} "
                f"state {descriptor.name!r}"
            )
        if descriptor.ttl_config is not None:
            return self._value_accessors_of(state)
        sid, kc, db, dirty = self._sid(descriptor.name), self._kc, self._db, self._dirty
        encode, decode = descriptor.serializer.encode, descriptor.serializer.decode
        db_get, db_put = db.get, db.put

        def get(key: Any) -> Any:
            entry = kc[key]
            raw = db_get(entry[0] + sid + entry[1])
            return None if raw is None else decode(raw)

        def put(key: Any, value: Any) -> None:
            entry = kc[key]
            if dirty is not None:
                dirty.add(entry[2])
            db_put(entry[0] + sid + entry[1], encode(value))

        return get, put

    def direct_rows(self, descriptor: MapStateDescriptor[Any, Any]) -> DirectRows | None:
        """The map state's rows (``direct_rows.py``); None for a state with a time-to-live."""
        state = self._get_state(descriptor)
        if descriptor.ttl_config is not None or not isinstance(state, RocksMapStateImpl):
            return None
        kc, dirty = self._kc, self._dirty
        mark = None if dirty is None else self._mark_dirty
        return DirectRows(self._db, self._sid(descriptor.name), kc.__getitem__, state._enc, state._dec, mark)

    # -- snapshot / restore ------------------------------------------------------------------

    def _freeze(self) -> FrozenKeyedState:
        with self._lock:
            self._snapshots += 1
            path = self._root / f"snapshot-{self._snapshots}"
        Checkpoint(self._db).create_checkpoint(str(path))
        names = {sid: name for name, sid in self._sids.items()}
        now_ms = int(self._ctx.clock() * 1000)
        alive = {
            name: alive_from(config, now_ms)
            for name, config in self._ttl_configs.items()
            if config.cleanup_strategies.full_snapshot
        }
        return _FrozenRocks(self._metas(), path, names, alive, self._kg)

    def _load_group(self, group: RestoredGroup) -> None:
        kgb = group.key_group.to_bytes(2, "big")
        batch = WriteBatch(raw_mode=True)
        for name, block in group.states.items():
            where = f"operator {self._ctx.operator_uid!r} state {name!r} key group {group.key_group}"
            entries = block_rows(block, where)
            sid = self._sid(name)
            kind = group.metas[name][0]
            for entry in entries:
                prefix = kgb + sid + encode_key(entry[0])
                if kind == "map":
                    for user_key, raw in entry[1]:
                        batch.put(prefix + user_key, raw)
                elif kind == "list":
                    batch.put(prefix, join_frames(entry[1]))
                else:
                    batch.put(prefix, entry[1])
        self._db.write(batch)

    def close(self) -> None:
        """Closes and deletes the local database."""
        if self._closed:
            return
        self._closed = True
        self._timers.clear()
        self._event_timers.clear()
        self._registered.clear()
        self._kc.clear()
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


__all__ = ["RocksDBKeyedStateBackend", "encode_key"]
