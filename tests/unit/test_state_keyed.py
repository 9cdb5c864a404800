from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.errors import PipelineError, RestoreError
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.functions import AggregateFunction
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from streamjob.worker.state.serializers import PickleSerializer
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

BACKENDS = ["hashmap", "rocksdb"]


class Avg(AggregateFunction[float, list[float], float]):
    def create_accumulator(self) -> list[float]:
        return [0.0, 0.0]

    def add(self, value: float, accumulator: list[float]) -> list[float]:
        accumulator[0] += value
        accumulator[1] += 1
        return accumulator

    def get_result(self, accumulator: list[float]) -> float:
        return accumulator[0] / accumulator[1]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]


@dataclasses.dataclass
class Visit:
    page: str
    n: int


BALANCE = ValueStateDescriptor("balance", float, 0.0)
HISTORY = ListStateDescriptor("history", int)
ATTRS = MapStateDescriptor("attrs", str, Visit)
TOTAL = ReducingStateDescriptor("total", lambda a, b: a + b, int)
AVG = AggregatingStateDescriptor("avg", Avg())


def fill(backend: KeyedBackendLike, keys: list[Any]) -> None:
    balance = backend.get_state(BALANCE)
    history = backend.get_state(HISTORY)
    attrs = backend.get_state(ATTRS)
    total = backend.get_state(TOTAL)
    avg = backend.get_state(AVG)
    for i, key in enumerate(keys):
        backend.set_current_key(key)
        balance.update(float(i))
        history.add_all([i, i + 1])
        attrs.put("p", Visit(str(key), i))
        total.add(i)
        total.add(1)
        avg.add(float(i))
        avg.add(float(i) + 2)
        backend.register_processing_time_timer(1000 + i)


def expected(i: int, key: Any) -> tuple[Any, ...]:
    return (float(i), [i, i + 1], {"p": Visit(str(key), i)}, i + 1, i + 1.0)


def read(backend: KeyedBackendLike, key: Any) -> tuple[Any, ...]:
    backend.set_current_key(key)
    return (
        backend.get_state(BALANCE).value(),
        backend.get_state(HISTORY).get(),
        dict(backend.get_state(ATTRS).items()),
        backend.get_state(TOTAL).get(),
        backend.get_state(AVG).get(),
    )


KeyedBackendLike = KeyedStateBackend


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_value_state(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    state = backend.get_state(ValueStateDescriptor("user-balance", float, 0.0))
    backend.set_current_key("alice")
    assert state.value() == 0.0
    state.update(10.5)
    backend.set_current_key("bob")
    assert state.value() == 0.0
    state.update(1.0)
    backend.set_current_key("alice")
    assert state.value() == 10.5
    state.clear()
    assert state.value() == 0.0
    state.update(3.0)
    state.update(None)
    assert state.value() == 0.0


def test_mutable_default_is_copied_per_key(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    state = backend.get_state(ValueStateDescriptor("seen", list, []))
    backend.set_current_key("a")
    got = state.value()
    assert got == []
    got.append(1)
    backend.set_current_key("b")
    assert state.value() == []


def test_list_state(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    state = backend.get_state(ListStateDescriptor("l", int))
    backend.set_current_key(1)
    assert state.get() == []
    state.add(1)
    state.add_all([2, 3])
    view = state.get()
    view.append(99)
    assert state.get() == [1, 2, 3]
    state.update([7])
    assert state.get() == [7]
    backend.set_current_key(2)
    assert state.get() == []
    backend.set_current_key(1)
    state.clear()
    assert state.get() == []
    state.update([])
    assert state.get() == []


def test_map_state(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    state = backend.get_state(MapStateDescriptor("m", str, int))
    backend.set_current_key(("k", 1))
    assert state.is_empty()
    assert state.get("x") is None
    state.put("x", 1)
    state.put_all({"y": 2, "z": 3})
    state.put_all([("w", 4)])
    assert state.contains("x") and not state.contains("nope")
    assert sorted(state.keys()) == ["w", "x", "y", "z"]
    assert sorted(state.values()) == [1, 2, 3, 4]
    assert sorted(state.items()) == [("w", 4), ("x", 1), ("y", 2), ("z", 3)]
    state.remove("x")
    state.remove("absent")
    assert state.get("x") is None and not state.is_empty()
    backend.set_current_key(("k", 2))
    assert state.is_empty() and state.keys() == []
    backend.set_current_key(("k", 1))
    state.clear()
    assert state.is_empty()


def test_reducing_and_aggregating_state(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    total = backend.get_state(TOTAL)
    avg = backend.get_state(AVG)
    backend.set_current_key("k")
    assert total.get() is None and avg.get() is None
    for v in (1, 2, 3):
        total.add(v)
        avg.add(float(v))
    assert total.get() == 6
    assert avg.get() == 2.0
    total.clear()
    avg.clear()
    assert total.get() is None and avg.get() is None


def test_same_name_same_state_and_kind_conflicts(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    first = backend.get_state(ValueStateDescriptor("s", int))
    assert backend.get_state(ValueStateDescriptor("s", int)) is first
    with pytest.raises(PipelineError, match="already registered as value state"):
        backend.get_state(ListStateDescriptor("s", int))


def test_value_accessors(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    get, put = backend.get_value_accessors(ValueStateDescriptor("sum", int, 0))
    assert get("a") is None
    put("a", 5)
    assert get("a") == 5
    backend.set_current_key("a")
    assert backend.get_state(ValueStateDescriptor("sum", int, 0)).value() == 5
    with pytest.raises(PipelineError):
        backend.get_value_accessors(ListStateDescriptor("l"))


def test_hashmap_accessors_are_plain_dict_methods(tmp_path: Path) -> None:
    backend = make_backend("hashmap", tmp_path)
    get, put = backend.get_value_accessors(ValueStateDescriptor("sum", int, 0))
    assert type(get).__name__ == "builtin_function_or_method" and get.__self__.__class__ is dict
    assert put.__self__ is get.__self__  # type: ignore[attr-defined]


def test_timers(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    assert backend.next_timer_time() is None
    for key, ts in [("a", 30), ("b", 10), ("a", 10), ("a", 30), ("c", 20)]:
        backend.set_current_key(key)
        backend.register_processing_time_timer(ts)
    backend.set_current_key("c")
    backend.delete_processing_time_timer(20)
    assert backend.next_timer_time() == 10
    assert backend.pop_due_timers(5) == []
    assert backend.pop_due_timers(25) == [(10, "b"), (10, "a")]
    assert backend.next_timer_time() == 30
    assert backend.pop_due_timers(100) == [(30, "a")]
    assert backend.next_timer_time() is None


@pytest.mark.parametrize(("old_p", "new_p"), [(1, 1), (1, 3), (3, 2)])
def test_event_time_timers_survive_restore_and_rescale(kind: str, tmp_path: Path, old_p: int, new_p: int) -> None:
    storage = MemoryStorage()
    keys = [f"e{i}" for i in range(60)]
    handles = []
    for index in range(old_p):
        backend = make_backend(kind, tmp_path, parallelism=old_p, index=index)
        lo, hi = key_group_range(128, old_p, index)
        for i, key in enumerate(keys):
            if lo <= key_group_for(key, 128) <= hi:
                backend.set_current_key(key)
                backend.register_event_time_timer(100 + i)
                backend.register_processing_time_timer(5_000 + i)
                if i % 10 == 0:
                    backend.delete_event_time_timer(100 + i)
        handles.extend(backend.snapshot()(storage.writer(1)))
    fired: list[tuple[int, Any]] = []
    for index in range(new_p):
        backend = make_backend(kind, tmp_path, parallelism=new_p, index=index)
        backend.restore(handles, storage.reader())
        assert backend.pop_due_timers(4_999) == []
        first = backend.next_event_timer_time()
        due = backend.pop_due_event_timers(10_000)
        assert [t for t, _ in due] == sorted(t for t, _ in due)
        assert first is None or first == due[0][0]
        assert backend.next_event_timer_time() is None
        assert len(backend.pop_due_timers(10_000)) == len([k for k in keys if backend_owns(index, new_p, k)])
        fired.extend(due)
    assert sorted(fired) == sorted((100 + i, k) for i, k in enumerate(keys) if i % 10)


def backend_owns(index: int, parallelism: int, key: Any) -> bool:
    lo, hi = key_group_range(128, parallelism, index)
    return lo <= key_group_for(key, 128) <= hi


KEYS = [f"user-{i}" for i in range(300)] + list(range(100)) + [(i, "t") for i in range(50)]


def test_full_snapshot_round_trip(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    source = make_backend(kind, tmp_path)
    fill(source, KEYS)
    handles = source.snapshot()(storage.writer(1))
    assert handles and all(not h.shared for h in handles)
    target = make_backend(kind, tmp_path, uid="op")
    target.restore(handles, storage.reader())
    assert target.is_restored
    for i, key in enumerate(KEYS):
        assert read(target, key) == expected(i, key)
    assert target.pop_due_timers(10**9) == sorted(((1000 + i, k) for i, k in enumerate(KEYS)), key=lambda t: t[0])


@pytest.mark.parametrize(("old_p", "new_p"), [(1, 3), (3, 1), (2, 5), (4, 3)])
def test_rescale_keeps_every_key_exactly_once(kind: str, tmp_path: Path, old_p: int, new_p: int) -> None:
    storage = MemoryStorage()
    max_p = 128
    handles = []
    for index in range(old_p):
        backend = make_backend(kind, tmp_path, parallelism=old_p, index=index)
        lo, hi = key_group_range(max_p, old_p, index)
        mine = [(i, k) for i, k in enumerate(KEYS) if lo <= key_group_for(k, max_p) <= hi]
        fill_indexed(backend, mine)
        handles.extend(backend.snapshot()(storage.writer(7)))
    seen: dict[Any, int] = {}
    timers: list[tuple[int, Any]] = []
    for index in range(new_p):
        backend = make_backend(kind, tmp_path, parallelism=new_p, index=index, uid="op")
        backend.restore(handles, storage.reader())
        lo, hi = key_group_range(max_p, new_p, index)
        for i, key in enumerate(KEYS):
            if lo <= key_group_for(key, max_p) <= hi:
                assert read(backend, key) == expected(i, key)
                seen[key] = seen.get(key, 0) + 1
        got = backend.pop_due_timers(10**9)
        assert all(lo <= key_group_for(k, max_p) <= hi for _, k in got)
        timers.extend(got)
    assert seen == {key: 1 for key in KEYS}
    assert sorted(timers, key=repr) == sorted(((1000 + i, k) for i, k in enumerate(KEYS)), key=repr)


def fill_indexed(backend: KeyedStateBackend, items: list[tuple[int, Any]]) -> None:
    balance = backend.get_state(BALANCE)
    history = backend.get_state(HISTORY)
    attrs = backend.get_state(ATTRS)
    total = backend.get_state(TOTAL)
    avg = backend.get_state(AVG)
    for i, key in items:
        backend.set_current_key(key)
        balance.update(float(i))
        history.add_all([i, i + 1])
        attrs.put("p", Visit(str(key), i))
        total.add(i)
        total.add(1)
        avg.add(float(i))
        avg.add(float(i) + 2)
        backend.register_processing_time_timer(1000 + i)


def test_keys_outside_the_range_are_refused(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path, parallelism=2, index=0)
    outside = next(k for k in KEYS if key_group_for(k, 128) > 63)
    state = backend.get_state(BALANCE)
    backend.set_current_key(outside)
    with pytest.raises(PipelineError, match=r"reached the state of key groups 0\.\.63"):
        state.update(1.0)
        backend.snapshot()(MemoryStorage().writer(1))


def test_async_snapshot_isolation(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path)
    fill(backend, KEYS[:20])
    run = backend.snapshot()
    backend.set_current_key(KEYS[0])
    backend.get_state(BALANCE).update(-1.0)
    backend.get_state(HISTORY).add(-1)
    backend.get_state(ATTRS).put("new", Visit("x", 0))
    backend.get_state(TOTAL).add(100)
    backend.set_current_key("late")
    backend.get_state(BALANCE).update(5.0)
    backend.register_processing_time_timer(1)
    handles = run(storage.writer(1))
    restored = make_backend(kind, tmp_path)
    restored.restore(handles, storage.reader())
    for i, key in enumerate(KEYS[:20]):
        assert read(restored, key) == expected(i, key)
    restored.set_current_key("late")
    assert restored.get_state(BALANCE).value() == 0.0
    assert restored.next_timer_time() == 1000


def test_in_place_mutation_after_snapshot_is_not_in_it(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path)
    counter = backend.get_state(ValueStateDescriptor("counter", dict))
    rows = backend.get_state(ListStateDescriptor("rows", list))
    nested = backend.get_state(MapStateDescriptor("nested", str, dict))
    avg = backend.get_state(AVG)
    backend.set_current_key("k")
    counter.update({"n": 1})
    rows.add([1])
    nested.put("a", {"x": 1})
    avg.add(1.0)
    run = backend.snapshot()
    value = counter.value()
    value["n"] += 1
    counter.update(value)
    row = rows.get()
    row[0].append(2)
    rows.update(row)
    inner = nested.get("a")
    inner["x"] = 2
    nested.put("a", inner)
    avg.add(3.0)
    assert (counter.value(), rows.get(), nested.get("a"), avg.get()) == ({"n": 2}, [[1, 2]], {"x": 2}, 2.0)
    handles = run(storage.writer(1))
    restored = make_backend(kind, tmp_path)
    restored.restore(handles, storage.reader())
    restored.set_current_key("k")
    assert restored.get_state(ValueStateDescriptor("counter", dict)).value() == {"n": 1}
    assert restored.get_state(ListStateDescriptor("rows", list)).get() == [[1]]
    assert restored.get_state(MapStateDescriptor("nested", str, dict)).get("a") == {"x": 1}
    assert restored.get_state(AVG).get() == 1.0


def test_restored_state_is_checked_against_descriptor(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path)
    fill(backend, KEYS[:5])
    handles = backend.snapshot()(storage.writer(1))
    wrong_kind = make_backend(kind, tmp_path)
    wrong_kind.restore(handles, storage.reader())
    with pytest.raises(RestoreError, match="was value state in the snapshot"):
        wrong_kind.get_state(ListStateDescriptor("balance"))
    wrong_serializer = make_backend(kind, tmp_path)
    wrong_serializer.restore(handles, storage.reader())
    with pytest.raises(RestoreError, match="serializer"):
        wrong_serializer.get_state(ValueStateDescriptor("balance", serializer=PickleSerializer()))


def test_restore_refuses_a_different_max_parallelism(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, max_parallelism=128)
    fill(backend, KEYS[:5])
    handles = backend.snapshot()(storage.writer(1))
    other = make_backend(kind, tmp_path, max_parallelism=256)
    with pytest.raises(RestoreError, match=r"max parallelism 128.*now has max parallelism 256"):
        other.restore(handles, storage.reader())


def test_corrupted_files_are_restore_errors(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path)
    fill(backend, KEYS[:5])
    handles = backend.snapshot()(storage.writer(1))
    for handle in handles:
        storage.files[handle.path] = b"\xc1garbage"
    bad = [h.model_copy(update={"size": 8, "sha256": hashlib.sha256(b"\xc1garbage").hexdigest()}) for h in handles]
    with pytest.raises(RestoreError, match="corrupted"):
        make_backend(kind, tmp_path).restore(bad, storage.reader())


def test_unregistered_restored_state_survives_next_snapshot(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    first = make_backend(kind, tmp_path)
    fill(first, KEYS[:10])
    handles = first.snapshot()(storage.writer(1))
    second = make_backend(kind, tmp_path)
    second.restore(handles, storage.reader())
    second.get_state(BALANCE)  # only one of five states registered
    handles = second.snapshot()(storage.writer(2))
    third = make_backend(kind, tmp_path)
    third.restore(handles, storage.reader())
    for i, key in enumerate(KEYS[:10]):
        assert read(third, key) == expected(i, key)


def test_pickle_state_round_trip(kind: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    descriptor = ValueStateDescriptor("obj", serializer=PickleSerializer())
    backend = make_backend(kind, tmp_path)
    state = backend.get_state(descriptor)
    backend.set_current_key("k")
    state.update({"v": Visit("p", 1), "c": complex(1, 2)})
    handles = backend.snapshot()(storage.writer(1))
    restored = make_backend(kind, tmp_path)
    restored.restore(handles, storage.reader())
    restored.set_current_key("k")
    assert restored.get_state(descriptor).value() == {"v": Visit("p", 1), "c": complex(1, 2)}


def test_ttl_value_state(kind: str, tmp_path: Path) -> None:
    now = [1000.0]
    backend = make_backend(kind, tmp_path, clock=lambda: now[0])
    state = backend.get_state(ValueStateDescriptor("session", str, "none", ttl=10))
    backend.set_current_key("k")
    state.update("open")
    now[0] += 5
    assert state.value() == "open"
    now[0] += 6
    assert state.value() == "none"
    state.update("again")
    backend.set_current_key("old")
    state.update("stale")
    now[0] += 9
    storage = MemoryStorage()
    handles = backend.snapshot()(storage.writer(1))
    restored = make_backend(kind, tmp_path, clock=lambda: now[0])
    restored.restore(handles, storage.reader())
    rstate = restored.get_state(ValueStateDescriptor("session", str, "none", ttl=10))
    restored.set_current_key("k")
    assert rstate.value() == "again"
    now[0] += 2
    assert rstate.value() == "none"


def test_closed_backend_refuses_use(kind: str, tmp_path: Path) -> None:
    backend = make_backend(kind, tmp_path)
    backend.close()
    with pytest.raises(PipelineError, match="closed"):
        backend.get_state(BALANCE)


def test_copy_on_write_ends_when_snapshots_end(tmp_path: Path) -> None:
    import gc

    backend = make_backend("hashmap", tmp_path)
    backend.get_state(BALANCE)
    run = backend.snapshot()
    assert backend._inflight == 1  # type: ignore[attr-defined]
    run(MemoryStorage().writer(1))
    assert backend._inflight == 0  # type: ignore[attr-defined]
    backend.snapshot()  # never written: released when collected
    gc.collect()
    assert backend._inflight == 0  # type: ignore[attr-defined]


def test_mutable_value_accessors_are_copy_on_write(tmp_path: Path) -> None:
    storage = MemoryStorage()
    backend = make_backend("hashmap", tmp_path)
    descriptor = ValueStateDescriptor("acc", dict)
    get, put = backend.get_value_accessors(descriptor, mutable_values=True)
    put("k", {"n": 1})
    run = backend.snapshot()
    acc = get("k")
    acc["n"] += 1  # a reduce function mutating its accumulator in place
    put("k", acc)
    assert get("k") == {"n": 2}
    restored = make_backend("hashmap", tmp_path)
    restored.restore(run(storage.writer(1)), storage.reader())
    assert restored.get_value_accessors(descriptor)[0]("k") == {"n": 1}


def test_value_state_copy_on_write_follows_overlapping_snapshots(tmp_path: Path) -> None:
    """Value states skip the copy-on-write check only while no snapshot is in flight (class switch)."""
    from streamjob.worker.state.hashmap_states import HashValueState, QuietHashValueState

    storage = MemoryStorage()
    backend = make_backend("hashmap", tmp_path)
    acc = backend.get_state(ValueStateDescriptor("acc", dict))
    assert type(acc) is QuietHashValueState  # nothing in flight: the fast path
    backend.set_current_key("k")
    acc.update({"n": 1})
    first = backend.snapshot()
    assert type(acc) is HashValueState
    acc.value()["n"] = 2  # mutated in place, never written back: the snapshot keeps n == 1
    second = backend.snapshot()
    handles_first = first(storage.writer(1))  # one snapshot still in flight: copy-on-write goes on
    late = backend.get_state(ValueStateDescriptor("late", dict))  # registered while one is in flight
    assert type(late) is HashValueState
    late.update({"m": 1})
    third = backend.snapshot()
    acc.value()["n"] = 3
    late.value()["m"] = 5
    handles_second = second(storage.writer(2))
    handles_third = third(storage.writer(3))
    assert type(acc) is QuietHashValueState and type(late) is QuietHashValueState
    acc.value()["n"] = 4  # nothing in flight: the live object itself
    assert acc.value() == {"n": 4}
    expected = {1: ({"n": 1}, None), 2: ({"n": 2}, None), 3: ({"n": 2}, {"m": 1})}
    for cid, handles in ((1, handles_first), (2, handles_second), (3, handles_third)):
        restored = make_backend("hashmap", tmp_path)
        restored.restore(handles, storage.reader())
        restored.set_current_key("k")
        values = (
            restored.get_state(ValueStateDescriptor("acc", dict)).value(),
            restored.get_state(ValueStateDescriptor("late", dict)).value(),
        )
        assert values == expected[cid], cid


def test_unencodable_values_name_the_operator_and_state(kind: str, tmp_path: Path) -> None:
    from streamjob.worker.errors import SerializationError

    class Opaque:
        pass

    backend = make_backend(kind, tmp_path, uid="enricher")
    state = backend.get_state(ValueStateDescriptor("profile"))
    backend.set_current_key("k")
    with pytest.raises(SerializationError, match=r"'profile'.*Opaque.*fix: env.register_type\(Opaque\)"):
        state.update(Opaque())
        backend.snapshot()(MemoryStorage().writer(1))
