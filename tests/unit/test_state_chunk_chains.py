"""Incremental snapshots (hashmap and RocksDB) as chunk chains: deltas of changed keys, compaction, retention, rescale.

Every test keeps a model of the state (a dict per state, the timers) beside the backend and
compares a restore with it exactly. The chain test runs 50 checkpoints through the real
``file://`` checkpoint storage, with ``_metadata`` written and retention applied as the coordinator
does, and checks which shared files exist after each one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.chunks import (
    MAX_DELTAS,
    ColumnData,
    Delta,
    RestoredGroup,
    apply_deltas,
    compact,
)
from streamjob.worker.state.columns import PLAIN, decode_values, encode_values
from streamjob.worker.state.descriptors import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from streamjob.worker.state.incremental import ChunkMark, IncrementalTracker
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage import CheckpointStorage
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

ACC = ValueStateDescriptor("acc", tuple)
SEEN = ListStateDescriptor("seen", int)
TAGS = MapStateDescriptor("tags", str, int)
KEYS = [f"k{i}" for i in range(3000)]


class Model:
    """The expected state: value, list and map state and processing-time timers per key."""

    def __init__(self) -> None:
        self.acc: dict[str, tuple[int, int]] = {}
        self.seen: dict[str, list[int]] = {}
        self.tags: dict[str, dict[str, int]] = {}
        self.timers: set[tuple[int, str]] = set()

    def step(self, backend: KeyedStateBackend, rng: random.Random, changes: int) -> None:
        acc, seen, tags = backend.get_state(ACC), backend.get_state(SEEN), backend.get_state(TAGS)
        for _ in range(changes):
            key = rng.choice(KEYS)
            backend.set_current_key(key)
            op = rng.random()
            if op < 0.6:
                total, count = self.acc.get(key, (0, 0))
                self.acc[key] = (total + len(key), count + 1)
                acc.update(self.acc[key])
                self.seen.setdefault(key, []).append(count)
                seen.add(count)
            elif op < 0.75:
                tag = f"t{rng.randrange(4)}"
                self.tags.setdefault(key, {})[tag] = rng.randrange(100)
                tags.put(tag, self.tags[key][tag])
            elif op < 0.85:  # deleted keys must stay deleted after a restore
                self.acc.pop(key, None)
                self.seen.pop(key, None)
                self.tags.pop(key, None)
                acc.clear()
                seen.clear()
                tags.clear()
            elif op < 0.95:
                at = rng.randrange(1, 50) * 1000
                self.timers.add((at, key))
                backend.register_processing_time_timer(at)
            else:
                for at, owner in [t for t in self.timers if t[1] == key]:
                    self.timers.discard((at, owner))
                    backend.delete_processing_time_timer(at)

    def check(self, restored: list[KeyedStateBackend]) -> None:
        """Every backend of ``restored`` together (a rescaled restore) holds exactly the model."""
        got_acc: dict[str, Any] = {}
        got_seen: dict[str, Any] = {}
        got_tags: dict[str, Any] = {}
        got_timers: set[tuple[int, str]] = set()
        for backend in restored:
            acc, seen, tags = backend.get_state(ACC), backend.get_state(SEEN), backend.get_state(TAGS)
            ctx = backend._ctx  # type: ignore[attr-defined]
            for key in KEYS:
                if not ctx.key_group_range[0] <= backend._assigner.assign(key) <= ctx.key_group_range[1]:  # type: ignore[attr-defined]
                    continue
                backend.set_current_key(key)
                if acc.value() is not None:
                    got_acc[key] = acc.value()
                if list(seen.get()):
                    got_seen[key] = list(seen.get())
                if not tags.is_empty():
                    got_tags[key] = dict(tags.items())
            got_timers |= set(backend.pop_due_timers(10**9))
        assert got_acc == self.acc
        assert got_seen == {k: v for k, v in self.seen.items() if v}
        assert got_tags == {k: v for k, v in self.tags.items() if v}
        assert got_timers == self.timers


def restore(
    tmp_path: Path, handles: list[StateHandle], reader: Any, parallelism: int, kind: str = "hashmap"
) -> list[KeyedStateBackend]:
    backends = []
    for index in range(parallelism):
        backend = make_backend(kind, tmp_path, parallelism=parallelism, index=index, uid="sums")
        backend.restore(handles, reader)
        backends.append(backend)
    return backends


def metadata(checkpoint_id: int, handles: list[StateHandle]) -> CheckpointMetadata:
    return CheckpointMetadata(
        kind="checkpoint",
        checkpoint_id=checkpoint_id,
        job_id="j1",
        job_name="job",
        namespace="ns",
        trigger_timestamp_ms=checkpoint_id,
        completion_timestamp_ms=checkpoint_id,
        duration_ms=0,
        total_size=sum(h.size for h in handles),
        max_parallelism=128,
        mode="EXACTLY_ONCE",
        operators={
            "sums": OperatorSnapshot(
                uid="sums",
                name="sums",
                parallelism=1,
                max_parallelism=128,
                subtasks=[SubtaskSnapshot(subtask_index=0, keyed=handles)],
            )
        },
        shared_files=sorted({h.path for h in handles if h.shared}),
    )


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_a_chain_of_50_incremental_checkpoints_with_retention_restores_exactly(kind: str, tmp_path: Path) -> None:
    storage = CheckpointStorage.open(f"file://{tmp_path}/chk", None, namespace="ns", name="job", job_id="j1")
    shared_dir = tmp_path / "chk" / "ns" / "job" / "j1" / "shared"
    backend = make_backend(kind, tmp_path, incremental=True, uid="sums")
    model, rng = Model(), random.Random(14)
    model.step(backend, rng, 6000)
    referenced: dict[int, set[str]] = {}
    retained = 3
    deltas_seen = compactions = 0
    previous: list[StateHandle] = []
    shares: list[float] = []
    for checkpoint_id in range(1, 51):
        if checkpoint_id > 1:
            model.step(backend, rng, 30)  # 1 % of the keys
        handles = backend.snapshot()(storage.writer(checkpoint_id, "sums", 0))
        storage.write_metadata(metadata(checkpoint_id, handles))
        backend.notify_checkpoint_complete(checkpoint_id)
        referenced[checkpoint_id] = {h.path for h in handles}
        new = [h for h in handles if h.path not in {p.path for p in previous}]
        if checkpoint_id > 1:
            written, full = sum(h.size for h in new), sum(h.size for h in handles)
            shares.append(written / full)  # the chunks due for compaction are written whole, the rest as deltas
            chunks_new = {(h.key_group_start, h.key_group_end) for h in new}
            deltas_seen += sum(
                1 for h in new if len([p for p in handles if p.key_group_start == h.key_group_start]) > 1
            )
            compactions += sum(1 for c in chunks_new if len([p for p in handles if p.key_group_start == c[0]]) == 1)
        previous = handles
        # the chain is bounded: at most MAX_DELTAS deltas after each chunk's full file
        per_chunk: dict[Any, int] = {}
        for h in handles:
            per_chunk[h.key_group_start] = per_chunk.get(h.key_group_start, 0) + 1
        assert max(per_chunk.values()) <= MAX_DELTAS + 1
        storage.apply_retention(retained)
        kept = sorted(referenced)[-retained:]
        on_disk = {f"shared/{p.name}" for p in shared_dir.iterdir()}
        must = set().union(*(referenced[c] for c in kept))
        assert must <= on_disk, f"a file a retained checkpoint references was deleted: {sorted(must - on_disk)[:3]}"
        assert on_disk <= must, f"files no retained checkpoint references remain: {sorted(on_disk - must)[:3]}"
        if checkpoint_id % 10 == 0:
            model.check(
                restore(tmp_path / f"r{checkpoint_id}", handles, storage.reader(storage.checkpoint_base_uri), 1)
            )
    assert deltas_seen > 50 and compactions > 0, (deltas_seen, compactions)
    assert sorted(shares)[len(shares) // 2] < 0.1, f"the median checkpoint writes a small part of the state: {shares}"
    assert sum(shares) / len(shares) < 0.25, f"compactions dominate: {shares}"
    reader = storage.reader(storage.checkpoint_base_uri)
    for parallelism in (3, 2):
        model.check(restore(tmp_path / f"p{parallelism}", previous, reader, parallelism, kind))
    backend.close()


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_a_restored_chain_continues_incrementally_and_an_aborted_checkpoint_keeps_its_changes(
    kind: str, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True, uid="sums")
    model, rng = Model(), random.Random(3)
    model.step(backend, rng, 4000)
    backend.snapshot()(storage.writer(1))
    backend.notify_checkpoint_complete(1)
    model.step(backend, rng, 20)
    backend.snapshot()(storage.writer(2))
    backend.notify_checkpoint_aborted(2)  # its deltas must be written again by the next one
    model.step(backend, rng, 20)
    handles = backend.snapshot()(storage.writer(3))
    backend.notify_checkpoint_complete(3)
    model.check(restore(tmp_path / "a", handles, storage.reader(), 1, kind))

    again = make_backend(kind, tmp_path / "again", incremental=True, uid="sums")
    again.restore(handles, storage.reader())
    model.step(again, rng, 20)
    before = len(storage.uploads)
    later = again.snapshot()(storage.writer(4))
    assert 0 < len(storage.uploads) - before <= 20, "the restored chains are referenced, only deltas written"
    model.check(restore(tmp_path / "b", later, storage.reader(), 1, kind))


def test_changes_per_chunk_are_keys_or_the_whole_chunk() -> None:
    chunks = [(0, 3), (4, 7)]
    tracker = IncrementalTracker("op", chunks, lambda key: chunks[key % 2])
    tracker.dirty.clear()
    tracker.dirty.update({1, 3, 4, ChunkMark((4, 7))})
    plan = tracker.begin()
    assert tracker.changes(plan) == {(4, 7): None, (0, 3): {4}} or tracker.changes(plan) == {
        (0, 3): {4},
        (4, 7): None,
    }
    assert tracker.changed_chunks(plan) == {(0, 3), (4, 7)}


def handle(size: int, name: str = "x") -> StateHandle:
    return StateHandle(path=f"shared/{name}", size=size, sha256="0" * 64, shared=True)


def test_a_chain_is_compacted_after_max_deltas_or_when_its_deltas_outweigh_the_base() -> None:
    assert compact([])
    assert not compact([handle(1000)])
    assert not compact([handle(1000)] + [handle(10)] * (MAX_DELTAS - 1))
    assert compact([handle(1000)] + [handle(10)] * MAX_DELTAS)
    assert not compact([handle(1000), handle(250), handle(250)])
    assert compact([handle(1000), handle(250), handle(251)]), "the deltas weigh more than half the base"
    assert compact([handle(1000)] + [handle(1)] * (MAX_DELTAS - 12), stagger=3), "a staggered chunk compacts early"


def test_a_delta_replaces_its_keys_entries_and_timers_and_drops_deleted_keys() -> None:
    serializer = SafeSerializer()
    base = RestoredGroup(
        key_group=5,
        metas={"acc": ("value", "x"), "other": ("value", "x")},
        states={
            "acc": ColumnData(keys=["a", "b", "c"], values=encode_values([1, 2, 3], serializer, PLAIN)),
            "other": [["a", b"\x01"]],
        },
        timers=[(10, "a"), (20, "c")],
        event_timers=[(5, "b")],
    )
    delta = RestoredGroup(
        key_group=5,
        metas={"acc": ("value", "x")},
        states={"acc": ColumnData(keys=["b", "d"], values=encode_values([20, 40], serializer, PLAIN))},
        timers=[(30, "b")],
        event_timers=[],
    )
    removed = RestoredGroup(key_group=5, metas={}, states={}, timers=[], event_timers=[])
    merged = apply_deltas(
        base,
        [
            Delta(delta, frozenset({"a", "b", "d"}), frozenset({"acc"})),
            Delta(removed, frozenset({"d"}), frozenset({"acc"})),
        ],
        "here",
    )
    acc = merged.states["acc"]
    assert isinstance(acc, ColumnData) and acc.keys == ["c", "b"], "a deleted, b replaced, d added then deleted"
    assert acc.values[0] == PLAIN and decode_values(acc.values, serializer, "here") == [3, 20], "one plain column"
    assert merged.states["other"] == [["a", b"\x01"]], "a state the delta does not cover is untouched"
    assert merged.timers == [(20, "c"), (30, "b")]
    assert merged.event_timers == [], "the replaced key b lost its event timer"
    as_rows = RestoredGroup(5, {"acc": ("value", "x")}, {"acc": [["e", b"\x05"]]}, [], [])
    mixed = apply_deltas(base, [Delta(as_rows, frozenset({"e"}), frozenset({"acc"}))], "here")
    assert mixed.states["acc"] == [["a", b"\x01"], ["b", b"\x02"], ["c", b"\x03"], ["e", b"\x05"]], "rows when mixed"
