"""State TTL (``StateTtlConfig``) on all five keyed state kinds and both backends, with a fake clock.

The expected values are derived from Flink's documented semantics: a value is expired once
``last access + ttl <= now``; ``OnCreateAndWrite`` refreshes the timestamp on writes only,
``OnReadAndWrite`` on reads too; ``NeverReturnExpired`` hides (and removes) an expired value,
``ReturnExpiredIfNotCleanedUp`` returns it while it is still stored; full-snapshot cleanup leaves
expired values out of snapshots; state written with TTL and without do not restore into each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamjob.worker.api import Time
from streamjob.worker.errors import PipelineError, RestoreError, SerializationError
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.functions import AggregateFunction
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from streamjob.worker.state.operator_state import OperatorStateStore
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.state.ttl import StateTtlConfig, StateTtlConfigBuilder, TtlSerializer, TtlValue, stored_ts
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

BACKENDS = ["hashmap", "rocksdb"]
KINDS = ["value", "list", "map", "reducing", "aggregating"]
ON_CREATE = StateTtlConfig.UpdateType.OnCreateAndWrite
ON_READ = StateTtlConfig.UpdateType.OnReadAndWrite
NEVER = StateTtlConfig.StateVisibility.NeverReturnExpired
RETURN = StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp


class Sum(AggregateFunction[int, list[int], int]):
    def create_accumulator(self) -> list[int]:
        return [0]

    def add(self, value: int, accumulator: list[int]) -> list[int]:
        return [accumulator[0] + value]

    def get_result(self, accumulator: list[int]) -> int:
        return accumulator[0]

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0]]


def descriptor(kind: str, name: str = "s") -> StateDescriptor:
    return {
        "value": lambda: ValueStateDescriptor(name, int),
        "list": lambda: ListStateDescriptor(name, int),
        "map": lambda: MapStateDescriptor(name, str, int),
        "reducing": lambda: ReducingStateDescriptor(name, lambda a, b: a + b, int),
        "aggregating": lambda: AggregatingStateDescriptor(name, Sum()),
    }[kind]()


def write(kind: str, state: Any, value: int) -> None:
    if kind == "value":
        state.update(value)
    elif kind == "map":
        state.put("k", value)
    else:
        state.add(value)


def read(kind: str, state: Any) -> Any:
    """The visible value: an int, a list of ints (list state), or None when absent."""
    if kind == "value":
        return state.value()
    if kind == "map":
        return state.get("k")
    if kind == "list":
        return state.get() or None
    return state.get()


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> float:
        return self.ms / 1000

    def at(self, offset_s: float) -> None:
        self.ms = 1_000_000 + int(offset_s * 1000)


def ttl_state(
    kind: str,
    backend_kind: str,
    tmp_path: Path,
    clock: Clock,
    build: Callable[[StateTtlConfigBuilder], StateTtlConfigBuilder] = lambda b: b,
    **extra: Any,
) -> tuple[KeyedStateBackend, StateDescriptor, Any]:
    backend = make_backend(backend_kind, tmp_path, clock=clock, **extra)
    desc = descriptor(kind)
    desc.enable_time_to_live(build(StateTtlConfig.new_builder(Time.seconds(10))).build())
    return backend, desc, backend.get_state(desc)


def test_the_builder_speaks_flinks_names() -> None:
    config = (
        StateTtlConfig.new_builder(Time.seconds(1))
        .set_update_type(StateTtlConfig.UpdateType.OnReadAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
        .set_ttl_time_characteristic(StateTtlConfig.TtlTimeCharacteristic.ProcessingTime)
        .cleanup_full_snapshot()
        .cleanup_incrementally(10, True)
        .cleanup_in_rocksdb_compact_filter(1000)
        .build()
    )
    assert config.get_ttl() == 1000 and config.is_enabled()
    assert config.get_update_type() is ON_READ and config.get_state_visibility() is RETURN
    strategies = config.get_cleanup_strategies()
    assert strategies.full_snapshot and strategies.incremental_size == 10 and strategies.incremental_every_record
    assert strategies.rocksdb_compact_filter_entries == 1000 and strategies.is_cleanup_in_background()
    assert (
        not (
            StateTtlConfig.new_builder(dt.timedelta(minutes=1)).cleanup_incrementally(5).disable_cleanup_in_background()
        )
        .build()
        .get_cleanup_strategies()
        .is_cleanup_in_background()
    )
    defaults = StateTtlConfig.new_builder(60_000).build()
    assert (defaults.get_update_type(), defaults.get_state_visibility()) == (ON_CREATE, NEVER)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StateTtlConfig.new_builder("10s"),
        lambda: StateTtlConfig.new_builder(0),
        lambda: StateTtlConfig.new_builder(Time.seconds(1)).set_update_type("OnReadAndWrite"),  # type: ignore[arg-type]
        lambda: StateTtlConfig.new_builder(Time.seconds(1)).set_state_visibility(ON_READ),  # type: ignore[arg-type]
        lambda: StateTtlConfig.new_builder(Time.seconds(1)).cleanup_incrementally(0),
        lambda: ValueStateDescriptor("v").enable_time_to_live(Time.seconds(1)),  # type: ignore[arg-type]
    ],
)
def test_bad_ttl_settings_are_refused_with_the_fix(make: Callable[[], Any]) -> None:
    with pytest.raises(PipelineError, match=r"StateTtlConfig|Time.seconds|cleanup_size|must be at least"):
        make()


def test_a_disabled_update_type_means_no_ttl() -> None:
    desc = ValueStateDescriptor("v", int)
    desc.enable_time_to_live(
        StateTtlConfig.new_builder(Time.seconds(1)).set_update_type(StateTtlConfig.UpdateType.Disabled).build()
    )
    assert desc.get_ttl_config() is None


# Reads at 6 s, 12 s and 30 s of a value written at 0 s with a 10 s TTL (see the module docstring).
EXPECTED_READS = {
    (ON_CREATE, NEVER): [1, None, None],
    (ON_CREATE, RETURN): [1, 1, 1],
    (ON_READ, NEVER): [1, 1, None],
    (ON_READ, RETURN): [1, 1, 1],
}


@pytest.mark.parametrize("backend_kind", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", list(EXPECTED_READS), ids=lambda m: f"{m[0].value}-{m[1].value}")
def test_update_type_and_visibility(backend_kind: str, kind: str, mode: tuple[Any, Any], tmp_path: Path) -> None:
    clock = Clock()
    update, visibility = mode
    backend, desc, state = ttl_state(
        kind, backend_kind, tmp_path, clock, lambda b: b.set_update_type(update).set_state_visibility(visibility)
    )
    backend.set_current_key("key")
    write(kind, state, 1)
    reads = []
    for at in (6, 12, 30):
        clock.at(at)
        got = read(kind, state)
        reads.append(got[0] if isinstance(got, list) else got)
    assert reads == EXPECTED_READS[mode]
    write(kind, state, 5)  # a write after expiry: a fresh value, or folded into the expired one still returned
    folded = {"value": 5, "map": 5, "list": [1, 5], "reducing": 6, "aggregating": 6}[kind]
    assert read(kind, state) == (folded if visibility is RETURN else ([5] if kind == "list" else 5))
    clock.at(30 + 9.999)
    assert read(kind, state) is not None
    assert backend.get_state(desc) is state  # the same state object for the same name
    with pytest.raises(PipelineError, match="registered with serializer ttl\\+safe, not safe"):
        backend.get_state(descriptor(kind))  # the same name without the TTL


@pytest.mark.parametrize("backend_kind", BACKENDS)
def test_each_list_element_and_map_entry_has_its_own_ttl(backend_kind: str, tmp_path: Path) -> None:
    clock = Clock()
    backend = make_backend(backend_kind, tmp_path, clock=clock)
    config = StateTtlConfig.new_builder(Time.seconds(10)).build()
    listed, mapped = ListStateDescriptor("l", int), MapStateDescriptor("m", str, int)
    listed.enable_time_to_live(config)
    mapped.enable_time_to_live(config)
    lstate, mstate = backend.get_state(listed), backend.get_state(mapped)
    backend.set_current_key("k")
    lstate.add(1)
    mstate.put("old", 1)
    clock.at(5)
    lstate.add_all([2, 3])
    mstate.put_all({"new": 2})
    clock.at(10)
    assert lstate.get() == [2, 3]
    assert mstate.items() == [("new", 2)] and mstate.keys() == ["new"] and mstate.values() == [2]
    assert not mstate.contains("old") and mstate.contains("new") and not mstate.is_empty()
    clock.at(15)
    assert lstate.get() == [] and mstate.is_empty() and mstate.get("new") is None


@pytest.mark.parametrize("backend_kind", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cleanup", [True, False], ids=["full-snapshot-cleanup", "no-cleanup"])
def test_snapshots_keep_timestamps_and_full_snapshot_cleanup_drops_expired_values(
    backend_kind: str, target: str, kind: str, cleanup: bool, tmp_path: Path
) -> None:
    """Written at 0 s ("old") and 8 s ("new"), snapshot at 12 s, restored at parallelism 2."""

    def build(b: StateTtlConfigBuilder) -> StateTtlConfigBuilder:
        b = b.set_state_visibility(RETURN)  # an expired value still stored would show
        return b.cleanup_full_snapshot() if cleanup else b

    clock = Clock()
    backend, desc, state = ttl_state(kind, backend_kind, tmp_path, clock, build, max_parallelism=16)
    keys = {"old": [f"old-{i}" for i in range(6)], "new": [f"new-{i}" for i in range(6)]}
    for at, group in ((0, "old"), (8, "new")):
        clock.at(at)
        for key in keys[group]:
            backend.set_current_key(key)
            write(kind, state, 1)
    clock.at(12)
    storage = MemoryStorage()
    handles = backend.snapshot()(storage.writer(1))
    found: dict[str, Any] = {}
    for index in range(2):
        restored = make_backend(target, tmp_path, clock=clock, max_parallelism=16, parallelism=2, index=index)
        restored.restore(handles, storage.reader())
        rstate = restored.get_state(desc)
        low, high = key_group_range(16, 2, index)
        for key in keys["old"] + keys["new"]:
            if low <= key_group_for(key, 16) <= high:
                restored.set_current_key(key)
                found[key] = read(kind, rstate)
    one = [1] if kind == "list" else 1
    assert {key: found[key] for key in keys["new"]} == dict.fromkeys(keys["new"], one)
    assert {key: found[key] for key in keys["old"]} == dict.fromkeys(keys["old"], None if cleanup else one)


@pytest.mark.parametrize("backend_kind", BACKENDS)
def test_a_restored_value_keeps_its_age(backend_kind: str, tmp_path: Path) -> None:
    clock = Clock()
    backend, desc, state = ttl_state("value", backend_kind, tmp_path, clock)
    backend.set_current_key("k")
    state.update(7)
    clock.at(8)
    storage = MemoryStorage()
    handles = backend.snapshot()(storage.writer(1))
    restored = make_backend(backend_kind, tmp_path, clock=clock)
    restored.restore(handles, storage.reader())
    rstate = restored.get_state(desc)
    restored.set_current_key("k")
    clock.at(9.999)
    assert rstate.value() == 7
    clock.at(10)
    assert rstate.value() is None


@pytest.mark.parametrize(
    ("backend_kind", "strategy"),
    [
        ("hashmap", lambda b: b.cleanup_incrementally(3)),
        ("rocksdb", lambda b: b.cleanup_in_rocksdb_compact_filter(3)),
        ("rocksdb", lambda b: b.cleanup_incrementally(3)),
    ],
    ids=["hashmap-incremental", "rocksdb-compact-filter", "rocksdb-incremental"],
)
@pytest.mark.parametrize("kind", ["value", "list", "map"])
def test_background_cleanup_removes_expired_values_of_keys_never_read_again(
    backend_kind: str, strategy: Callable[[StateTtlConfigBuilder], StateTtlConfigBuilder], kind: str, tmp_path: Path
) -> None:
    """Expired values of untouched keys disappear from the stored state (seen through a snapshot)."""
    clock = Clock()
    backend, desc, state = ttl_state(
        kind, backend_kind, tmp_path, clock, lambda b: strategy(b.set_state_visibility(RETURN))
    )
    stale = [f"stale-{i}" for i in range(7)]
    for key in stale:
        backend.set_current_key(key)
        write(kind, state, 1)
    clock.at(11)
    backend.set_current_key("live")
    for _ in range(4):  # 4 accesses x 3 entries: more than the 8 stored keys
        write(kind, state, 2)
    storage = MemoryStorage()
    handles = backend.snapshot()(storage.writer(1))
    restored = make_backend(backend_kind, tmp_path, clock=clock)
    restored.restore(handles, storage.reader())
    rstate = restored.get_state(desc)
    for key in stale:
        restored.set_current_key(key)
        assert read(kind, rstate) is None, key  # visibility RETURN: only a removal hides it
    restored.set_current_key("live")
    assert read(kind, rstate) is not None


@pytest.mark.parametrize("backend_kind", BACKENDS)
def test_ttl_and_plain_state_do_not_restore_into_each_other(backend_kind: str, tmp_path: Path) -> None:
    """As in Flink (a StateMigrationException there): the stored bytes differ."""
    plain = make_backend(backend_kind, tmp_path)
    plain.get_state(ValueStateDescriptor("v", int)).update(1)
    storage = MemoryStorage()
    handles = plain.snapshot()(storage.writer(1))
    restored = make_backend(backend_kind, tmp_path)
    restored.restore(handles, storage.reader())
    desc = ValueStateDescriptor("v", int)
    desc.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(1)).build())
    with pytest.raises(RestoreError, match=r"'v' was written with serializer 'safe'.*'ttl\+safe'"):
        restored.get_state(desc)


@pytest.mark.parametrize("backend_kind", BACKENDS)
def test_the_internal_value_accessors_honour_ttl(backend_kind: str, tmp_path: Path) -> None:
    clock = Clock()
    backend, desc, _ = ttl_state("value", backend_kind, tmp_path, clock)
    get, put = backend.get_value_accessors(desc)
    put("k", 3)
    assert get("k") == 3
    clock.at(10)
    assert get("k") is None


def test_operator_state_refuses_a_ttl() -> None:
    desc = ListStateDescriptor("offsets", int)
    desc.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(1)).build())
    with pytest.raises(PipelineError, match="TTL is for keyed state"):
        OperatorStateStore("source").get_list_state(desc)


def test_the_shorthand_ttl_argument_is_a_full_snapshot_cleanup_config() -> None:
    config = ValueStateDescriptor("v", int, ttl=dt.timedelta(seconds=3)).get_ttl_config()
    assert config is not None and config.get_ttl() == 3000 and config.get_cleanup_strategies().full_snapshot
    with pytest.raises(PipelineError, match="at least 1 ms"):
        ValueStateDescriptor("v", int, ttl=0)


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=0, max_value=2**63 - 1))
def test_ttl_bytes_round_trip_values_with_their_timestamp_and_plain_map_keys(value: Any, ts: int) -> None:
    serializer = TtlSerializer(SafeSerializer())
    data = serializer.encode(TtlValue(value, ts))
    assert serializer.decode(data) == TtlValue(value, ts) and stored_ts(data) == ts
    assert serializer.decode(serializer.encode(value)) == value  # a map's user key: no timestamp
    with pytest.raises(SerializationError):
        serializer.decode(b"\x07" + data[1:])
