"""Micro benchmarks of the state hot paths: key groups, state get/put, snapshots of 10,000 keys.

Run: ``.venv/bin/python bench/state_micro.py``. Numbers are CPU time of the measuring thread
(robust on a machine shared with other work), per operation, best of 5 runs; snapshot and
restore timings are CPU time too (the rocksdb flush in the synchronous part runs in RocksDB's
own threads and is partly not counted).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state import (
    KeyedBackendContext,
    ValueStateDescriptor,
    create_keyed_backend,
    key_group_for,
    key_group_range,
)
from streamjob.worker.state.key_groups import KeyGroupAssigner

KEYS = [f"user-{i}" for i in range(10_000)]


class MemoryReader:
    """Reads what a NullWriter kept."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, handle: StateHandle) -> bytes:
        return self.files[handle.path]


class NullWriter:
    """Counts bytes (and keeps them, for the restore benchmark)."""

    def __init__(self, checkpoint_id: int) -> None:
        self._id = checkpoint_id
        self.bytes = 0
        self.count = 0
        self.shared: set[str] = set()
        self.files: dict[str, bytes] = {}

    @property
    def checkpoint_id(self) -> int:
        return self._id

    @property
    def is_savepoint(self) -> bool:
        return False

    def _handle(self, path: str, data: bytes, **extra: Any) -> StateHandle:
        self.bytes += len(data)
        self.count += 1
        self.files[path] = data
        return StateHandle(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **extra)

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        return self._handle(f"chk/{name}", data)

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        self.shared.add(name)
        return self._handle(f"shared/{name}", data, shared=True)

    def shared_exists(self, name: str) -> bool:
        return name in self.shared


CLOCK = time.thread_time


def per_op_ns(stmt: Any, number: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=5, timer=CLOCK)) / number * 1e9


def bench_key_groups() -> None:
    assigner = KeyGroupAssigner(128)
    for key in KEYS:
        assigner.assign(key)
    keys = KEYS
    n = len(keys)

    def hits_assign() -> None:
        assign = assigner.assign
        for key in keys:
            assign(key)

    def hits_lookup() -> None:
        lookup = assigner.lookup
        for key in keys:
            lookup(key)

    print(f"key_group_for (no cache)          {per_op_ns(lambda: key_group_for('user-1234', 128), 20_000):8.0f} ns")
    print(f"KeyGroupAssigner.assign (hit)     {per_op_ns(hits_assign, 50) / n:8.0f} ns")
    print(f"KeyGroupAssigner.lookup (hit)     {per_op_ns(hits_lookup, 50) / n:8.0f} ns")


def make(kind: str, root: Path, incremental: bool = False) -> Any:
    ctx = KeyedBackendContext(
        operator_uid="bench",
        subtask_index=0,
        parallelism=1,
        max_parallelism=128,
        key_group_range=key_group_range(128, 1, 0),
        local_dir=root / f"{kind}-{incremental}",
        incremental=incremental,
    )
    return create_keyed_backend(kind, ctx)


def bench_backend(kind: str, root: Path) -> None:
    backend = make(kind, root)
    state = backend.get_state(ValueStateDescriptor("balance", float, 0.0))
    get, put = backend.get_value_accessors(ValueStateDescriptor("sum", int))
    keys, n = KEYS, len(KEYS)
    set_key = backend.set_current_key
    for i, key in enumerate(keys):
        set_key(key)
        state.update(float(i))
        put(key, i)

    def value_loop() -> None:
        value = state.value
        for key in keys:
            set_key(key)
            value()

    def update_loop() -> None:
        update = state.update
        for key in keys:
            set_key(key)
            update(1.5)

    def accessor_loop() -> None:
        for key in keys:
            put(key, get(key) + 1)

    def set_key_loop() -> None:
        for key in keys:
            set_key(key)

    base = per_op_ns(set_key_loop, 20) / n
    print(f"[{kind}] set_current_key            {base:8.0f} ns")
    print(f"[{kind}] set_current_key + value()  {per_op_ns(value_loop, 20) / n:8.0f} ns")
    print(f"[{kind}] set_current_key + update() {per_op_ns(update_loop, 20) / n:8.0f} ns")
    print(f"[{kind}] accessors get + put         {per_op_ns(accessor_loop, 20) / n:8.0f} ns")
    backend.close()


def bench_snapshots(kind: str, root: Path) -> None:
    for incremental in (False, True):
        backend = make(kind, root, incremental)
        state = backend.get_state(ValueStateDescriptor("balance", float, 0.0))
        for i, key in enumerate(KEYS):
            backend.set_current_key(key)
            state.update(float(i))
        label = "incremental" if incremental else "full"
        writer = NullWriter(1)
        t0 = CLOCK()
        run = backend.snapshot()
        t1 = CLOCK()
        handles = run(writer)
        t2 = CLOCK()
        print(
            f"[{kind}] {label:11s} snapshot of 10,000 keys: sync {(t1 - t0) * 1e3:6.2f} ms, "
            f"async {(t2 - t1) * 1e3:6.2f} ms, {writer.count} files, {writer.bytes} bytes"
        )
        if not incremental:
            target = make(kind, root / "restore")
            t0 = CLOCK()
            target.restore(handles, MemoryReader(writer.files))
            target.get_state(ValueStateDescriptor("balance", float, 0.0))
            print(f"[{kind}] restore of 10,000 keys (and registration): {(CLOCK() - t0) * 1e3:6.2f} ms")
            target.close()
        if incremental:
            backend.notify_checkpoint_complete(1)
            backend.set_current_key(KEYS[42])
            state.update(-1.0)
            writer2 = NullWriter(2)
            writer2.shared = writer.shared
            before = writer2.bytes
            t0 = CLOCK()
            run = backend.snapshot()
            t1 = CLOCK()
            run(writer2)
            t2 = CLOCK()
            print(
                f"[{kind}] incremental after 1 change:     sync {(t1 - t0) * 1e3:6.2f} ms, "
                f"async {(t2 - t1) * 1e3:6.2f} ms, {writer2.count} files, {writer2.bytes - before} bytes"
            )
        backend.close()


def main() -> None:
    bench_key_groups()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in ("hashmap", "rocksdb"):
            bench_backend(kind, root)
        for kind in ("hashmap", "rocksdb"):
            bench_snapshots(kind, root)


if __name__ == "__main__":
    main()
