from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor, ValueStateDescriptor
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

COUNT = ValueStateDescriptor("count", int, 0)
TAGS = MapStateDescriptor("tags", str, str)
KEYS = [f"k{i}" for i in range(10_000)]
CHUNKS = {"rocksdb": 8, "hashmap": 8}
"""Default chunk files of one incremental subtask (128 key groups, 16 per chunk; changes are written as deltas)."""


@pytest.fixture(params=["hashmap", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def checkpoint(backend: KeyedStateBackend, storage: MemoryStorage, cid: int) -> tuple[list[StateHandle], int]:
    before = len(storage.uploads)
    handles = backend.snapshot()(storage.writer(cid))
    return handles, len(storage.uploads) - before


def touch(backend: KeyedStateBackend, key: Any, value: int) -> None:
    backend.set_current_key(key)
    backend.get_state(COUNT).update(value)


def check(kind: str, tmp_path: Path, storage: MemoryStorage, handles: list[StateHandle], want: dict[Any, int]) -> None:
    restored = make_backend(kind, tmp_path)
    restored.restore(handles, storage.reader())
    state = restored.get_state(COUNT)
    for key in KEYS:
        restored.set_current_key(key)
        assert state.value() == want.get(key, 0), key
    restored.close()


def test_only_changed_chunks_are_uploaded(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    want = {key: i for i, key in enumerate(KEYS)}
    for key, value in want.items():
        touch(backend, key, value)
    first, uploaded = checkpoint(backend, storage, 1)
    assert uploaded == len(first) == CHUNKS[kind] and all(h.shared for h in first)
    full_bytes = storage.uploaded_bytes()
    backend.notify_checkpoint_complete(1)

    deltas = 0
    for cid in range(2, 6):
        key = KEYS[cid * 7]
        want[key] = -cid
        touch(backend, key, -cid)
        before_bytes = storage.uploaded_bytes()
        handles, uploaded = checkpoint(backend, storage, cid)
        assert uploaded == 1
        written = storage.uploaded_bytes() - before_bytes
        # a delta of the one key: a small file, added to its chunk's chain
        assert written < full_bytes / 400, written
        deltas += 1
        assert len(handles) == CHUNKS[kind] + deltas
        backend.notify_checkpoint_complete(cid)
        check(kind, tmp_path, storage, handles, want)

    handles, uploaded = checkpoint(backend, storage, 6)
    assert uploaded == 0 and len(handles) == CHUNKS[kind] + deltas


def test_aborted_and_pending_checkpoints_do_not_advance_the_base(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    want: dict[Any, int] = {}
    for i, key in enumerate(KEYS[:500]):
        touch(backend, key, i)
        want[key] = i
    checkpoint(backend, storage, 1)
    backend.notify_checkpoint_complete(1)

    touch(backend, "k1", 111)
    want["k1"] = 111
    checkpoint(backend, storage, 2)
    backend.notify_checkpoint_aborted(2)
    handles, _ = checkpoint(backend, storage, 3)  # no new change, but k1's chunk must be in it
    check(kind, tmp_path, storage, handles, want)

    touch(backend, "k2", 222)  # checkpoint 3 is still pending (never confirmed)
    want["k2"] = 222
    handles, _ = checkpoint(backend, storage, 4)
    check(kind, tmp_path, storage, handles, want)
    backend.notify_checkpoint_complete(4)
    handles, uploaded = checkpoint(backend, storage, 5)
    assert uploaded == 0
    check(kind, tmp_path, storage, handles, want)


def test_failed_async_part_keeps_changes(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    touch(backend, "a", 1)
    checkpoint(backend, storage, 1)
    backend.notify_checkpoint_complete(1)
    touch(backend, "b", 2)

    class Broken:
        checkpoint_id = 2
        is_savepoint = False

        def shared_exists(self, name: str) -> bool:
            raise OSError("storage down")

        def write_shared(self, name: str, data: bytes) -> None:
            raise OSError("storage down")

    with pytest.raises(OSError):
        backend.snapshot()(Broken())  # type: ignore[arg-type]
    handles, uploaded = checkpoint(backend, storage, 3)
    assert uploaded == 1
    check(kind, tmp_path, storage, handles, {"a": 1, "b": 2})


def test_savepoint_is_full_and_private(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    for i, key in enumerate(KEYS[:300]):
        touch(backend, key, i)
    checkpoint(backend, storage, 1)
    backend.notify_checkpoint_complete(1)
    touch(backend, "k5", 55)
    savepoint = backend.snapshot()(storage.writer(2, savepoint=True))
    assert savepoint and not any(h.shared for h in savepoint)
    assert all(h.path.startswith("savepoint/") for h in savepoint)
    want = {key: i for i, key in enumerate(KEYS[:300])} | {"k5": 55}
    check(kind, tmp_path, storage, savepoint, want)
    # the savepoint did not consume the change: the next checkpoint still uploads k5's chunk
    _, uploaded = checkpoint(backend, storage, 3)
    assert uploaded == 1


def test_restored_incremental_backend_reuses_shared_files(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    for i, key in enumerate(KEYS[:2000]):
        touch(backend, key, i)
        backend.set_current_key(key)
        backend.get_state(TAGS).put("t", key)
    handles, _ = checkpoint(backend, storage, 1)
    backend.notify_checkpoint_complete(1)
    restored = make_backend(kind, tmp_path, incremental=True)
    restored.restore(handles, storage.reader())
    restored.get_state(COUNT)
    _, uploaded = checkpoint(restored, storage, 2)
    assert uploaded == 0
    restored.set_current_key("k3")
    restored.get_state(TAGS).put("u", "v")
    restored.register_processing_time_timer(5)
    _, uploaded = checkpoint(restored, storage, 3)
    assert uploaded == 1


def test_restore_into_a_new_lineage_uploads_what_it_cannot_reference(kind: str, tmp_path: Path) -> None:
    old = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=True)
    for i, key in enumerate(KEYS[:500]):
        touch(backend, key, i)
    handles, _ = checkpoint(backend, old, 1)
    restored = make_backend(kind, tmp_path, incremental=True)
    restored.restore(handles, old.reader())
    new = MemoryStorage()  # e.g. started from a retained checkpoint under a new job id
    handles, uploaded = checkpoint(restored, new, 1)
    assert uploaded == len(handles) == CHUNKS[kind]
    check(kind, tmp_path, new, handles, {key: i for i, key in enumerate(KEYS[:500])})


@pytest.mark.parametrize(("source", "target"), [("hashmap", "rocksdb"), ("rocksdb", "hashmap")])
def test_savepoint_switches_backends(source: str, target: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(source, tmp_path)
    tags = backend.get_state(TAGS)
    for i, key in enumerate(KEYS[:200]):
        touch(backend, key, i)
        backend.set_current_key(key)
        tags.put(str(i), key)
        tags.put("same", "x")
        backend.register_processing_time_timer(i)
    handles = backend.snapshot()(storage.writer(1, savepoint=True))
    other = make_backend(target, tmp_path)
    other.restore(handles, storage.reader())
    count, tags2 = other.get_state(COUNT), other.get_state(TAGS)
    for i, key in enumerate(KEYS[:200]):
        other.set_current_key(key)
        assert count.value() == i
        assert dict(tags2.items()) == {str(i): key, "same": "x"}
    assert len(other.pop_due_timers(10**6)) == 200
