"""Seeded random operations against a model, with snapshots, completions, aborts and rescaled restores."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

VALUE = ValueStateDescriptor("v", dict)
LIST = ListStateDescriptor("l", int)
MAP = MapStateDescriptor("m", str, list)
SUM = ReducingStateDescriptor("s", lambda a, b: a + b, int)
KEYS: list[Any] = [f"k{i}" for i in range(20)] + list(range(10)) + [(i, "x") for i in range(5)] + [None, b"b"]
MAX_P = 32

Model = dict[str, dict[Any, Any]]


def empty_model() -> Model:
    return {"v": {}, "l": {}, "m": {}, "s": {}, "t": {}}


def apply(backend: KeyedStateBackend, model: Model, rng: random.Random) -> None:
    key = rng.choice(KEYS)
    backend.set_current_key(key)
    op = rng.randrange(9)
    if op == 0:
        value = backend.get_state(VALUE).value()
        value = {"n": 0} if value is None else value
        value["n"] += 1  # in-place mutation, then write back
        backend.get_state(VALUE).update(value)
        model["v"][key] = copy.deepcopy(value)
    elif op == 1:
        backend.get_state(VALUE).clear()
        model["v"].pop(key, None)
    elif op == 2:
        n = rng.randrange(100)
        backend.get_state(LIST).add(n)
        model["l"].setdefault(key, []).append(n)
    elif op == 3:
        items = [rng.randrange(5) for _ in range(rng.randrange(3))]
        backend.get_state(LIST).update(items)
        if items:
            model["l"][key] = items
        else:
            model["l"].pop(key, None)
    elif op == 4:
        user_key = rng.choice("abc")
        current = backend.get_state(MAP).get(user_key) or []
        current.append(rng.randrange(9))
        backend.get_state(MAP).put(user_key, current)
        model["m"].setdefault(key, {})[user_key] = list(current)
    elif op == 5:
        user_key = rng.choice("abc")
        backend.get_state(MAP).remove(user_key)
        if key in model["m"]:
            model["m"][key].pop(user_key, None)
            if not model["m"][key]:
                del model["m"][key]
    elif op == 6:
        n = rng.randrange(10)
        backend.get_state(SUM).add(n)
        model["s"][key] = model["s"].get(key, 0) + n
    elif op == 7:
        ts = rng.randrange(1000)
        backend.register_processing_time_timer(ts)
        model["t"].setdefault(key, set()).add(ts)
    else:
        ts = rng.choice(sorted(model["t"].get(key) or {0}))
        backend.delete_processing_time_timer(ts)
        model["t"].get(key, set()).discard(ts)


def read_all(backend: KeyedStateBackend, keys: list[Any]) -> Model:
    got = empty_model()
    for key in keys:
        backend.set_current_key(key)
        value = backend.get_state(VALUE).value()
        if value is not None:
            got["v"][key] = value
        items = backend.get_state(LIST).get()
        if items:
            got["l"][key] = items
        entries = dict(backend.get_state(MAP).items())
        if entries:
            got["m"][key] = entries
        total = backend.get_state(SUM).get()
        if total is not None:
            got["s"][key] = total
    for ts, key in backend.pop_due_timers(10**9):
        got["t"].setdefault(key, set()).add(ts)
    return got


def restrict(model: Model, keys: set[Any]) -> Model:
    return {name: {k: v for k, v in table.items() if k in keys and v != set()} for name, table in model.items()}


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_snapshots_and_rescaled_restores(
    kind: str, incremental: bool, seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, max_parallelism=MAX_P, incremental=incremental, key_groups_per_chunk=2)
    model = empty_model()
    snapshots: list[tuple[list[StateHandle], Model]] = []
    for cid in range(1, 13):
        for _ in range(rng.choice([1, 2, 5, 40])):
            apply(backend, model, rng)
        run = backend.snapshot()
        frozen = copy.deepcopy(model)
        for _ in range(rng.randrange(4)):  # keeps going while the snapshot is written
            apply(backend, model, rng)
        handles = run(storage.writer(cid))
        outcome = rng.random()
        if outcome < 0.6:
            backend.notify_checkpoint_complete(cid)
        elif outcome < 0.8:
            backend.notify_checkpoint_aborted(cid)
        snapshots.append((handles, frozen))
    for handles, frozen in snapshots[-1:] + rng.sample(snapshots[:-1], 5):
        parallelism = rng.choice([1, 2, 3])
        for index in range(parallelism):
            restored = make_backend(kind, tmp_path, max_parallelism=MAX_P, parallelism=parallelism, index=index)
            restored.restore(handles, storage.reader())
            low, high = key_group_range(MAX_P, parallelism, index)
            mine = {k for k in KEYS if low <= key_group_for(k, MAX_P) <= high}
            assert read_all(restored, sorted(mine, key=repr)) == restrict(frozen, mine)
            restored.close()


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_snapshots_written_by_a_thread_while_processing_continues(kind: str, tmp_path: Path) -> None:
    import threading

    rng = random.Random(7)
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, max_parallelism=MAX_P, incremental=True, key_groups_per_chunk=4)
    model = empty_model()
    results: list[tuple[list[StateHandle], Model]] = []
    errors: list[BaseException] = []
    for cid in range(1, 6):
        for _ in range(200):
            apply(backend, model, rng)
        run = backend.snapshot()
        frozen = copy.deepcopy(model)

        def write(run: Any = run, frozen: Model = frozen, cid: int = cid) -> None:
            try:
                results.append((run(storage.writer(cid)), frozen))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        for _ in range(300):  # the task thread keeps mutating while the snapshot is written
            apply(backend, model, rng)
        thread.join()
        backend.notify_checkpoint_complete(cid)
    assert not errors
    for handles, frozen in results:
        restored = make_backend(kind, tmp_path, max_parallelism=MAX_P)
        restored.restore(handles, storage.reader())
        assert read_all(restored, KEYS) == restrict(frozen, set(KEYS))
        restored.close()
