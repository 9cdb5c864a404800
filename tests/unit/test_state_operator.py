from __future__ import annotations

import pytest

from streamjob.worker.errors import PipelineError, RestoreError, SerializationError
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.descriptors import ListStateDescriptor
from streamjob.worker.state.operator_state import OperatorStateStore
from streamjob.worker.state.serializers import PickleSerializer
from tests.unit.test_state_support import MemoryStorage

pytestmark = pytest.mark.unit

OFFSETS = ListStateDescriptor("offsets", tuple)
SEEN = ListStateDescriptor("seen", int)


def snapshot_all(storage: MemoryStorage, stores: list[OperatorStateStore], cid: int) -> list[list[StateHandle]]:
    return [store.snapshot()(storage.writer(cid)) for store in stores]


def old_stores(parallelism: int) -> list[OperatorStateStore]:
    stores = []
    for index in range(parallelism):
        store = OperatorStateStore("src", index)
        store.get_list_state(OFFSETS).update([(f"p{index}-{j}", j) for j in range(index + 2)])
        store.get_union_list_state(SEEN).add(index)
        stores.append(store)
    return stores


@pytest.mark.parametrize(("old_p", "new_p"), [(1, 3), (3, 1), (3, 2), (2, 5), (4, 4), (1, 1)])
def test_even_split_and_union_redistribution(old_p: int, new_p: int) -> None:
    storage = MemoryStorage()
    handles = snapshot_all(storage, old_stores(old_p), 1)
    all_offsets = [(f"p{i}-{j}", j) for i in range(old_p) for j in range(i + 2)]
    got: list[tuple[str, int]] = []
    sizes = []
    for index in range(new_p):
        store = OperatorStateStore("src", index)
        store.restore(handles, storage.reader(), index, new_p)
        assert store.is_restored()
        mine = store.get_list_state(OFFSETS).get()
        sizes.append(len(mine))
        got.extend(mine)
        assert store.get_union_list_state(SEEN).get() == list(range(old_p))
    assert got == all_offsets  # contiguous slices in old-subtask order
    if old_p != new_p:
        assert max(sizes) - min(sizes) <= 1


def test_unchanged_parallelism_keeps_each_subtasks_own_elements() -> None:
    storage = MemoryStorage()
    handles = snapshot_all(storage, old_stores(3), 1)  # subtask i holds i + 2 offsets: uneven
    for index in range(3):
        store = OperatorStateStore("src", index)
        store.restore(handles, storage.reader(), index, 3)
        assert store.get_list_state(OFFSETS).get() == [(f"p{index}-{j}", j) for j in range(index + 2)]
        assert store.get_union_list_state(SEEN).get() == [0, 1, 2]


def test_fresh_store_is_not_restored_and_empty_snapshot_writes_nothing() -> None:
    store = OperatorStateStore("x", 0)
    assert not store.is_restored()
    assert store.snapshot()(MemoryStorage().writer(1)) == []


def test_snapshot_is_isolated_from_later_changes() -> None:
    storage = MemoryStorage()
    store = OperatorStateStore("x", 0)
    state = store.get_list_state(SEEN)
    positions = store.get_list_state(ListStateDescriptor("positions", dict))
    state.update([1, 2])
    position = {"offset": 1}
    positions.add(position)
    run = store.snapshot()
    state.add(3)
    position["offset"] = 2
    handles = run(storage.writer(1))
    restored = OperatorStateStore("x", 0)
    restored.restore([handles], storage.reader(), 0, 1)
    assert restored.get_list_state(SEEN).get() == [1, 2]
    assert restored.get_list_state(ListStateDescriptor("positions", dict)).get() == [{"offset": 1}]


def test_unregistered_state_is_carried_over() -> None:
    storage = MemoryStorage()
    first = OperatorStateStore("x", 0)
    first.get_list_state(SEEN).update([5])
    second = OperatorStateStore("x", 0)
    second.restore([first.snapshot()(storage.writer(1))], storage.reader(), 0, 1)
    third = OperatorStateStore("x", 0)
    third.restore([second.snapshot()(storage.writer(2))], storage.reader(), 0, 1)
    assert third.get_list_state(SEEN).get() == [5]


def test_mode_and_serializer_mismatches_are_errors() -> None:
    storage = MemoryStorage()
    store = OperatorStateStore("x", 0)
    store.get_list_state(SEEN).add(1)
    with pytest.raises(PipelineError, match="already registered as split"):
        store.get_union_list_state(SEEN)
    handles = [store.snapshot()(storage.writer(1))]
    other = OperatorStateStore("x", 0)
    other.restore(handles, storage.reader(), 0, 1)
    with pytest.raises(RestoreError, match="union"):
        other.get_union_list_state(SEEN)
    third = OperatorStateStore("x", 0)
    third.restore(handles, storage.reader(), 0, 1)
    with pytest.raises(RestoreError, match="serializer"):
        third.get_list_state(ListStateDescriptor("seen", serializer=PickleSerializer()))


def test_pickle_operator_state_and_safe_refusal() -> None:
    storage = MemoryStorage()

    class Txn:
        def __init__(self, n: int) -> None:
            self.n = n

    store = OperatorStateStore("sink", 0)
    store.get_list_state(ListStateDescriptor("txn")).add(Txn(1))
    with pytest.raises(SerializationError, match="sink"):
        store.snapshot()(storage.writer(1))
    pickled = OperatorStateStore("sink", 0)
    pickled.get_list_state(ListStateDescriptor("txn", serializer=PickleSerializer())).add(("t", 1))
    handles = [pickled.snapshot()(storage.writer(2))]
    restored = OperatorStateStore("sink", 0)
    restored.restore(handles, storage.reader(), 0, 1)
    assert restored.get_list_state(ListStateDescriptor("txn", serializer=PickleSerializer())).get() == [("t", 1)]
