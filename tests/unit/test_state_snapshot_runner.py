"""SnapshotRunner (state/snapshot_runner.py): preparation in steps on the task thread, then the write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.errors import SerializationError
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import ValueStateDescriptor
from streamjob.worker.state.snapshot_runner import SnapshotRunner
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit


def test_steps_run_one_budget_at_a_time_and_the_call_finishes_them() -> None:
    done: list[int] = []

    def steps() -> Iterator[None]:
        for i in range(5):
            done.append(i)
            yield

    runner = SnapshotRunner(lambda writer: list(done), steps())
    assert not runner.prepare(0.0) and done == [0]
    assert not runner.prepare(0.0) and done == [0, 1]
    assert runner(MemoryStorage().writer(1)) == [0, 1, 2, 3, 4]
    assert runner.prepared


def test_a_failing_step_fails_the_write_not_the_task_thread() -> None:
    def steps() -> Iterator[None]:
        yield
        raise SerializationError("cannot encode")

    runner = SnapshotRunner(lambda writer: "written", steps())
    while not runner.prepare(0.0):
        pass
    with pytest.raises(SerializationError, match="cannot encode"):
        runner(MemoryStorage().writer(1))


def _counts(tmp_path: Path, keys: int) -> tuple[KeyedStateBackend, Callable[[Any, Any], None]]:
    """A hashmap backend whose value state "count" holds key -> key for ``keys`` keys, and its put."""
    backend = make_backend("hashmap", tmp_path)
    _, put = backend.get_value_accessors(ValueStateDescriptor("count", int))
    for key in range(keys):
        put(key, key)
    return backend, put


def test_hashmap_snapshot_is_encoded_in_steps_with_the_same_result(tmp_path: Path) -> None:
    backend, put = _counts(tmp_path, 20_000)
    stepped = backend.snapshot()
    steps = 0
    while not stepped.prepare(0.0):
        steps += 1
        put(steps, -1)  # processing between steps does not reach the snapshot (copy at the barrier)
    assert steps > 3
    storage = MemoryStorage()
    handles = stepped(storage.writer(1))
    restored = make_backend("hashmap", tmp_path, uid="restored")
    restored.restore(handles, storage.reader())
    get2, _ = restored.get_value_accessors(ValueStateDescriptor("count", int))
    assert [get2(key) for key in range(20_000)] == list(range(20_000))


def test_size_hint_is_known_once_a_hashmap_snapshot_is_prepared(tmp_path: Path) -> None:
    backend, _ = _counts(tmp_path, 5_000)
    runner = backend.snapshot()
    assert runner.size_hint() is None  # not prepared yet
    while not runner.prepare(0.0):
        pass
    hint = runner.size_hint()
    handles = runner(MemoryStorage().writer(1))
    assert hint == sum(h.size for h in handles) > 0


@pytest.mark.parametrize(("kind", "incremental"), [("rocksdb", False), ("hashmap", True)])
def test_size_hint_is_unknown_when_the_write_itself_encodes(tmp_path: Path, kind: str, incremental: bool) -> None:
    backend = make_backend(kind, tmp_path, incremental=incremental)
    _, put = backend.get_value_accessors(ValueStateDescriptor("count", int))
    put(1, 1)
    runner = backend.snapshot()
    runner.prepare(float("inf"))
    assert runner.size_hint() is None
    runner(MemoryStorage().writer(1))
    backend.close()


def test_a_failed_step_hides_the_size_so_the_failure_goes_to_the_background_part() -> None:
    def steps() -> Iterator[None]:
        raise SerializationError("cannot encode")
        yield

    runner = SnapshotRunner(lambda writer: "written", steps(), size=lambda: 10)
    assert runner.prepare(0.0)
    assert runner.size_hint() is None
