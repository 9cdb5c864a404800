"""What both keyed backends share: current key, registry, timers, chunk grid, snapshot and restore.

A concrete backend supplies how states are created, frozen at a barrier (``_freeze``) and loaded
from restored key groups (``_load_group``); this base turns that into the snapshot file format
(``chunks.py``) — one file per subtask for a full snapshot or savepoint, changed chunks of the
grid for an incremental one — and the restore with rescaling. See ``backend.py`` for the
recovery contract.

Callers: ``hashmap.py`` and ``rocksdb.py`` (subclasses).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from streamjob.worker.errors import (
    CorruptStateError,
    PipelineError,
    RestoreError,
    SerializationError,
    StreamJobError,
)
from streamjob.worker.snapshot.handles import SnapshotReader, SnapshotWriter, StateHandle
from streamjob.worker.state.backend import KeyedBackendContext, KeyedStateBackend
from streamjob.worker.state.chunks import (
    Chunk,
    GroupData,
    RestoredGroup,
    chunks_of,
    compact,
    default_chunk_size,
    encode_chunk,
    encode_delta_chunk,
    private_name,
    read_groups,
)
from streamjob.worker.state.descriptors import StateDescriptor
from streamjob.worker.state.incremental import Chain, ChunkMark, IncrementalPlan, IncrementalTracker
from streamjob.worker.state.key_groups import KeyGroupAssigner
from streamjob.worker.state.primitives import State, ValueState
from streamjob.worker.state.snapshot_runner import SnapshotRunner
from streamjob.worker.state.timers import TimerQueue
from streamjob.worker.state.ttl import StateTtlConfig, TtlSerializer
from streamjob.worker.state.ttl_states import inner_descriptor, wrap

GroupFor = Callable[[int], GroupData | None]


def stored_serializer_id(descriptor: StateDescriptor) -> str:
    """The serializer id the state's bytes are written with (a TTL state's differs from its descriptor's)."""
    if descriptor.ttl_config is None:
        return descriptor.serializer.serializer_id
    return TtlSerializer(descriptor.serializer).serializer_id


class FrozenKeyedState:
    """The synchronous copy of a backend's state taken at a barrier (subclassed per backend)."""

    on_task_thread = False
    """True if encoding this copy is pure CPU work the task thread may do in steps (no I/O)."""

    delta_states: frozenset[str] | None = None
    """The states a delta of this copy covers (``fill_keys``), or None if it cannot write deltas."""

    def __init__(self, metas: dict[str, tuple[str, str]]) -> None:
        self.metas = metas

    def fill(self, chunks: list[Chunk], group_for: GroupFor) -> None:
        """Adds the entries of ``chunks`` (``group_for`` returns None for key groups outside them)."""
        raise NotImplementedError

    def fill_steps(self, chunks: list[Chunk], group_for: GroupFor) -> Iterator[None]:
        """``fill`` in slices (one step by default)."""
        self.fill(chunks, group_for)
        yield

    def fill_keys(self, keys: set[Any], group_for: GroupFor) -> None:
        """Adds the entries of ``keys`` only, in the states ``delta_states`` names (deltas)."""
        raise NotImplementedError

    def release(self) -> None:
        """Frees what the copy holds (temporary files); called once, after writing."""


class KeyedBackendBase(KeyedStateBackend):
    """Shared implementation of ``KeyedStateBackend``; see the module docstring."""

    direct_key = True  # set_current_key only stores _key: operators assign it directly

    def __init__(self, ctx: KeyedBackendContext) -> None:
        self._ctx = ctx
        self._key: Any = None
        self._assigner = KeyGroupAssigner(ctx.max_parallelism)
        self._kg = self._assigner.lookup
        self._chunk_size = ctx.key_groups_per_chunk or default_chunk_size(ctx.max_parallelism, ctx.parallelism)
        self._chunks = chunks_of(ctx.key_group_range, self._chunk_size)
        self._first_chunk_index = ctx.key_group_range[0] // self._chunk_size
        self._timers = TimerQueue()
        self._event_timers = TimerQueue()
        self._tracker = (
            IncrementalTracker(ctx.operator_uid, self._chunks, self._chunk_of_key) if ctx.incremental else None
        )
        self._registered: dict[str, tuple[StateDescriptor, State]] = {}
        self._ttl_configs: dict[str, StateTtlConfig] = {}
        self._restored_metas: dict[str, tuple[str, str]] = {}
        self._restored = False
        self._closed = False

    # -- current key -------------------------------------------------------------------------

    def set_current_key(self, key: Any) -> None:
        """Scopes every state to ``key`` (nothing else: see ``direct_key``)."""
        self._key = key

    @property
    def current_key(self) -> Any:
        """The key set last."""
        return self._key

    def chunk_of(self, key_group: int) -> Chunk:
        """The snapshot chunk that holds ``key_group``; PipelineError outside this backend's range."""
        low, high = self._ctx.key_group_range
        if not low <= key_group <= high:
            raise PipelineError(
                f"operator {self._ctx.operator_uid!r} subtask {self._ctx.subtask_index}: a key of key group "
                f"{key_group} reached the state of key groups {low}..{high}; records must be "
                "partitioned by the same key selector and max parallelism as the state"
            )
        return self._chunks[key_group // self._chunk_size - self._first_chunk_index]

    def _chunk_of_key(self, key: Any) -> Chunk:
        return self.chunk_of(self._assigner.assign(key))

    def _mark_dirty(self, key: Any) -> None:
        """Records that ``key``'s chunk changed (incremental snapshots only)."""
        if self._tracker is not None:
            self._tracker.dirty.add(ChunkMark(self._chunk_of_key(key)))

    # -- registry ----------------------------------------------------------------------------

    def _get_state(self, descriptor: StateDescriptor) -> State:
        self._check_open()
        if not isinstance(descriptor, StateDescriptor):
            raise PipelineError(f"get_state needs a state descriptor, got {type(descriptor).__name__}")
        existing = self._registered.get(descriptor.name)
        stored_id = stored_serializer_id(descriptor)
        if existing is not None:
            known, state = existing
            if known.kind != descriptor.kind:
                raise PipelineError(
                    f"operator {self._ctx.operator_uid!r}: state {descriptor.name!r} is already registered "
                    f"as {known.kind} state, cannot register it again as {descriptor.kind} state; "
                    "give each state its own name"
                )
            if known.serializer.serializer_id != stored_id:
                raise PipelineError(
                    f"operator {self._ctx.operator_uid!r}: state {descriptor.name!r} is registered with "
                    f"serializer {known.serializer.serializer_id}, not {stored_id}"
                )
            return state
        if descriptor.ttl_config is None:
            self._check_restored_meta(descriptor)
            state = self._create_state(descriptor)
            self._registered[descriptor.name] = (descriptor, state)
            return state
        clock = self._ctx.clock

        def now() -> int:
            return int(clock() * 1000)

        stored = inner_descriptor(descriptor, now)
        self._check_restored_meta(stored)
        self._ttl_configs[descriptor.name] = descriptor.ttl_config
        inner = self._create_state(stored)
        state = wrap(inner, descriptor, now, self._ttl_sweep(stored, descriptor.ttl_config))
        self._registered[descriptor.name] = (stored, state)
        return state

    def _ttl_sweep(self, stored: StateDescriptor, config: StateTtlConfig) -> Callable[[], None] | None:
        """The incremental cleanup of a TTL state run on each access, or None (per backend)."""
        return None

    def _value_accessors_of(self, state: State) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
        """``get_value_accessors`` through a value state's own methods (TTL value state)."""
        if not isinstance(state, ValueState):
            raise PipelineError("value accessors of a state with a time-to-live exist for value state only")

        def get(key: Any) -> Any:
            previous, self._key = self._key, key
            try:
                return state.value()
            finally:
                self._key = previous

        def put(key: Any, value: Any) -> None:
            previous, self._key = self._key, key
            try:
                state.update(value)
            finally:
                self._key = previous

        return get, put

    def _check_restored_meta(self, descriptor: StateDescriptor) -> None:
        meta = self._restored_metas.get(descriptor.name)
        if meta is None:
            return
        kind, serializer_id = meta
        if kind != descriptor.kind:
            raise RestoreError(
                f"operator {self._ctx.operator_uid!r}: state {descriptor.name!r} was {kind} state in the "
                f"snapshot but is declared as {descriptor.kind} state now; keep the kind or rename the state"
            )
        if serializer_id != descriptor.serializer.serializer_id:
            raise RestoreError(
                f"operator {self._ctx.operator_uid!r}: state {descriptor.name!r} was written with serializer "
                f"{serializer_id!r} but its descriptor declares {descriptor.serializer.serializer_id!r}; "
                "declare the serializer it was written with"
            )

    def _metas(self) -> dict[str, tuple[str, str]]:
        metas = dict(self._restored_metas)
        for name, (descriptor, _) in self._registered.items():
            metas[name] = (descriptor.kind, descriptor.serializer.serializer_id)
        return metas

    @abstractmethod
    def _create_state(self, descriptor: StateDescriptor) -> State:
        """A new state object for a newly registered descriptor (consuming restored entries)."""

    # -- timers ------------------------------------------------------------------------------

    def timer_registrar(self, *, event_time: bool) -> Callable[[int, Any], None]:
        """The timer queue's own ``register`` (one call per timer), marking the key when incremental."""
        queue = self._event_timers if event_time else self._timers
        if self._tracker is None:
            return queue.register
        queue_register, mark = queue.register, self._mark_dirty

        def register(timestamp_ms: int, key: Any) -> None:
            queue_register(timestamp_ms, key)
            mark(key)

        return register

    def register_processing_time_timer(self, timestamp_ms: int) -> None:
        """Registers a timer for the current key."""
        self._timers.register(timestamp_ms, self._key)
        if self._tracker is not None:
            self._mark_dirty(self._key)

    def delete_processing_time_timer(self, timestamp_ms: int) -> None:
        """Deletes the current key's timer at ``timestamp_ms``."""
        self._timers.delete(timestamp_ms, self._key)
        if self._tracker is not None:
            self._mark_dirty(self._key)

    def next_timer_time(self) -> int | None:
        """The earliest timer's timestamp."""
        return self._timers.next_time()

    def pop_due_timers(self, now_ms: int) -> list[tuple[int, Any]]:
        """The due timers, removed, in time order."""
        due = self._timers.pop_due(now_ms)
        if self._tracker is not None:
            for _, key in due:
                self._mark_dirty(key)
        return due

    def register_event_time_timer(self, timestamp_ms: int) -> None:
        """Registers an event-time timer for the current key (fires when the watermark passes it)."""
        self._event_timers.register(timestamp_ms, self._key)
        if self._tracker is not None:
            self._mark_dirty(self._key)

    def delete_event_time_timer(self, timestamp_ms: int) -> None:
        """Deletes the current key's event-time timer at ``timestamp_ms``."""
        self._event_timers.delete(timestamp_ms, self._key)
        if self._tracker is not None:
            self._mark_dirty(self._key)

    def next_event_timer_time(self) -> int | None:
        """The earliest event-time timer's timestamp."""
        return self._event_timers.next_time()

    def pop_due_event_timers(self, watermark_ms: int) -> list[tuple[int, Any]]:
        """The event-time timers with ``timestamp <= watermark_ms``, removed, in time order."""
        due = self._event_timers.pop_due(watermark_ms)
        if self._tracker is not None:
            for _, key in due:
                self._mark_dirty(key)
        return due

    # -- snapshot ----------------------------------------------------------------------------

    @abstractmethod
    def _freeze(self) -> FrozenKeyedState:
        """The synchronous copy of every state (task thread, at the barrier)."""

    def snapshot(self) -> SnapshotRunner[list[StateHandle]]:
        """Copies the state now; the returned runner encodes (in steps) and writes the files.

        A full snapshot of a backend whose copy can be encoded on the task thread (hashmap) is
        encoded in the runner's preparation steps (``snapshot_runner.py``); otherwise (RocksDB,
        incremental snapshots, which consult storage first) encoding runs in the background call.
        """
        self._check_open()
        tracker = self._tracker
        frozen = self._freeze()
        timers = (self._timers.copy_entries(), self._event_timers.copy_entries())
        plan = tracker.begin() if tracker is not None else None
        whole = [self._ctx.key_group_range]  # one file for a full snapshot: restores filter by key group
        prepared: list[tuple[Chunk, bytes]] = []
        steps = self._encode_steps(frozen, timers, whole, prepared) if plan is None and frozen.on_task_thread else None

        def run(writer: SnapshotWriter) -> list[StateHandle]:
            try:
                if plan is None or tracker is None or writer.is_savepoint:
                    if plan is not None and tracker is not None:
                        tracker.cancel(plan.token)
                    encoded = prepared if steps is not None else self._encode(frozen, timers, whole)
                    return [
                        writer.write(private_name(self._ctx.operator_uid, chunk), data, key_groups=chunk)
                        for chunk, data in encoded
                    ]
                return self._write_incremental(writer, tracker, plan, frozen, timers)
            except BaseException:
                if plan is not None and tracker is not None:
                    tracker.cancel(plan.token)
                raise
            finally:
                frozen.release()

        def size() -> int | None:
            return sum(len(data) for _, data in prepared) if steps is not None else None

        return SnapshotRunner(run, steps, size)

    def _write_incremental(
        self,
        writer: SnapshotWriter,
        tracker: IncrementalTracker,
        plan: IncrementalPlan,
        frozen: FrozenKeyedState,
        timers: tuple[list[tuple[int, Any]], list[tuple[int, Any]]],
    ) -> list[StateHandle]:
        """Background part of an incremental snapshot: unchanged chunks referenced, changed ones written.

        A changed chunk is written as a delta of its marked keys when the backend can, every mark
        in it is a key and its chain is not due for compaction (``chunks.compact``); else whole.
        """
        changes = tracker.changes(plan)
        chains: dict[Chunk, Chain] = {}
        whole: list[Chunk] = []
        deltas: dict[Chunk, set[Any]] = {}
        for chunk in self._chunks:
            base = plan.base.get(chunk)
            usable = base is not None and tracker.base_usable(writer, plan, chunk)
            if chunk not in changes:
                if base is not None and usable:
                    chains[chunk] = list(base)
                elif base is not None:
                    whole.append(chunk)
                continue
            keys = changes[chunk]
            stagger = chunk[0] // self._chunk_size % 4  # chunks changing together are not compacted together
            if keys is None or not usable or frozen.delta_states is None or compact(base or [], stagger):
                whole.append(chunk)
            else:
                deltas[chunk] = keys
        for chunk, data in self._encode(frozen, timers, whole) if whole else ():  # encoding scans every key
            chains[chunk] = [tracker.upload(writer, chunk, data)]
        for chunk, data in self._encode_deltas(frozen, timers, deltas):
            chains[chunk] = [*plan.base[chunk], tracker.upload(writer, chunk, data)]
        tracker.finish(plan.token, writer.checkpoint_id, chains)
        return [handle for chunk in self._chunks for handle in chains.get(chunk, ())]

    def _encode_deltas(
        self,
        frozen: FrozenKeyedState,
        timers: tuple[list[tuple[int, Any]], list[tuple[int, Any]]],
        deltas: dict[Chunk, set[Any]],
    ) -> list[tuple[Chunk, bytes]]:
        """The delta file of each chunk: the current entries and timers of its marked keys."""
        if not deltas or frozen.delta_states is None:
            return []
        lookup = self._assigner.lookup
        replaced: dict[Chunk, dict[int, list[Any]]] = {}
        wanted: set[Any] = set()
        for chunk, keys in deltas.items():
            per_group: dict[int, list[Any]] = {}
            for key in keys:
                per_group.setdefault(lookup(key), []).append(key)
            replaced[chunk] = per_group
            wanted |= keys
        groups: dict[int, GroupData] = {}

        def group_for(key_group: int) -> GroupData:
            group = groups.get(key_group)
            if group is None:
                group = groups[key_group] = GroupData()
            return group

        for ts, key in timers[0]:
            if key in wanted:
                group_for(lookup(key)).timers.append([ts, key])
        for ts, key in timers[1]:
            if key in wanted:
                group_for(lookup(key)).event_timers.append([ts, key])
        try:
            frozen.fill_keys(wanted, group_for)
        except SerializationError as exc:
            raise SerializationError(f"operator {self._ctx.operator_uid!r}: {exc}") from exc
        metas = {name: meta for name, meta in frozen.metas.items() if name in frozen.delta_states}
        max_parallelism = self._ctx.max_parallelism
        return [
            (chunk, encode_delta_chunk(chunk, max_parallelism, metas, groups, per_group))
            for chunk, per_group in replaced.items()
        ]

    def _encode(
        self,
        frozen: FrozenKeyedState,
        timers: tuple[list[tuple[int, Any]], list[tuple[int, Any]]],
        chunks: list[Chunk],
    ) -> list[tuple[Chunk, bytes]]:
        out: list[tuple[Chunk, bytes]] = []
        for _ in self._encode_steps(frozen, timers, chunks, out):
            pass
        return out

    def _encode_steps(
        self,
        frozen: FrozenKeyedState,
        timers: tuple[list[tuple[int, Any]], list[tuple[int, Any]]],
        chunks: list[Chunk],
        out: list[tuple[Chunk, bytes]],
    ) -> Iterator[None]:
        """Encodes ``chunks`` into ``out``, one slice of work per step."""
        low, high = self._ctx.key_group_range
        wanted = bytearray(high - low + 1)  # 1 for the key groups of the chunks to write
        for start, end in chunks:
            wanted[start - low : end - low + 1] = b"\x01" * (end - start + 1)
        groups: dict[int, GroupData] = {}
        chunk_of = self.chunk_of

        def group_for(key_group: int) -> GroupData | None:
            group = groups.get(key_group)
            if group is not None:
                return group
            if not low <= key_group <= high:
                chunk_of(key_group)  # raises the routing error
            if not wanted[key_group - low]:
                return None
            group = groups[key_group] = GroupData()
            return group

        lookup = self._assigner.lookup  # keys held in dicts and sets are hashable
        known = groups.get  # the common case without a call of group_for per timer
        for ts, key in timers[0]:
            key_group = lookup(key)
            group = known(key_group) or group_for(key_group)
            if group is not None:
                group.timers.append([ts, key])
        for ts, key in timers[1]:
            key_group = lookup(key)
            group = known(key_group) or group_for(key_group)
            if group is not None:
                group.event_timers.append([ts, key])
        yield
        try:
            yield from frozen.fill_steps(chunks, group_for)
        except SerializationError as exc:
            raise SerializationError(f"operator {self._ctx.operator_uid!r}: {exc}") from exc
        for chunk in chunks:
            members = {kg: groups[kg] for kg in range(chunk[0], chunk[1] + 1) if kg in groups}
            data = encode_chunk(chunk, self._ctx.max_parallelism, frozen.metas, members)
            if data is not None:
                out.append((chunk, data))

    # -- restore -----------------------------------------------------------------------------

    @abstractmethod
    def _load_group(self, group: RestoredGroup) -> None:
        """Stores a restored key group's entries (decoding them if their state is registered)."""

    def restore(self, handles: Sequence[StateHandle], reader: SnapshotReader) -> None:
        """Loads this range's key groups from the handles of any old subtasks."""
        self._check_open()
        try:
            ctx = self._ctx
            for group in read_groups(handles, reader, ctx.key_group_range, ctx.max_parallelism):
                for name, meta in group.metas.items():
                    known = self._restored_metas.setdefault(name, meta)
                    if known != meta:
                        raise RestoreError(
                            f"operator {self._ctx.operator_uid!r}: state {name!r} appears as {known} and "
                            f"{meta} in the snapshot files"
                        )
                    if name in self._registered:
                        self._check_restored_meta(self._registered[name][0])
                self._load_group(group)
                self._timers.restore(group.timers)
                self._event_timers.restore(group.event_timers)
        except StreamJobError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise CorruptStateError(
                f"operator {self._ctx.operator_uid!r}: keyed state files are corrupted (malformed: {exc})"
            ) from exc
        if handles:
            self._restored = True
        if self._tracker is not None:
            self._tracker.adopt(handles)

    @property
    def is_restored(self) -> bool:
        """Whether state was restored from at least one handle."""
        return self._restored

    # -- lifecycle ---------------------------------------------------------------------------

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Advances the incremental base."""
        if self._tracker is not None:
            self._tracker.complete(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Keeps the aborted checkpoint's changes dirty."""
        if self._tracker is not None:
            self._tracker.abort(checkpoint_id)

    def _check_open(self) -> None:
        if self._closed:
            raise PipelineError(f"operator {self._ctx.operator_uid!r}: the keyed state backend is closed")


__all__ = ["FrozenKeyedState", "GroupFor", "KeyedBackendBase"]
