"""Contract test: keyed and operator state through the real file:// checkpoint storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.state.descriptors import ListStateDescriptor, ValueStateDescriptor
from streamjob.worker.state.operator_state import OperatorStateStore
from streamjob.worker.storage import CheckpointStorage
from tests.unit.test_state_support import make_backend

pytestmark = pytest.mark.unit

COUNT = ValueStateDescriptor("count", int, 0)


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_incremental_checkpoints_and_savepoint_through_file_storage(kind: str, tmp_path: Path) -> None:
    storage = CheckpointStorage.open(
        f"file://{tmp_path}/checkpoints", f"file://{tmp_path}/savepoints", namespace="ns", name="job", job_id="j1"
    )
    backend = make_backend(kind, tmp_path, incremental=True, uid="counter")
    state = backend.get_state(COUNT)
    want = {}
    for i in range(1000):
        backend.set_current_key(f"k{i}")
        state.update(i)
        want[f"k{i}"] = i
    backend.register_processing_time_timer(123)
    first = backend.snapshot()(storage.writer(1, "counter", 0))
    backend.notify_checkpoint_complete(1)
    backend.set_current_key("k7")
    state.update(-7)
    want["k7"] = -7
    second = backend.snapshot()(storage.writer(2, "counter", 0))
    backend.notify_checkpoint_complete(2)
    assert all(h.shared for h in second) and len({h.path for h in second} - {h.path for h in first}) == 1

    savepoint_dir = storage.new_savepoint_dir()
    savepoint = backend.snapshot()(storage.writer(3, "counter", 0, savepoint_dir=savepoint_dir))
    assert savepoint and not any(h.shared for h in savepoint)

    for handles, base in ((second, storage.checkpoint_base_uri), (savepoint, savepoint_dir)):
        restored = make_backend(kind, tmp_path, uid="counter")
        restored.restore(handles, storage.reader(base))
        restored_state = restored.get_state(COUNT)
        for key, value in want.items():
            restored.set_current_key(key)
            assert restored_state.value() == value
        assert restored.pop_due_timers(1000) == [(123, "k999")]
        restored.close()
    backend.close()


def test_operator_state_through_file_storage(tmp_path: Path) -> None:
    storage = CheckpointStorage.open(f"file://{tmp_path}/checkpoints", None, namespace="ns", name="job", job_id="j1")
    handles = []
    for index in range(2):
        store = OperatorStateStore("source", index)
        store.get_list_state(ListStateDescriptor("splits", tuple)).update([(f"s{index}", 10 * index)])
        handles.append(store.snapshot()(storage.writer(1, "source", index)))
    restored = OperatorStateStore("source", 0)
    restored.restore(handles, storage.reader(storage.checkpoint_base_uri), 0, 1)
    assert restored.get_list_state(ListStateDescriptor("splits", tuple)).get() == [("s0", 0), ("s1", 10)]
