"""Plain classes and dataclasses in state by field encoding: round trips, and refusals that execute nothing.

The seeds' ``SensorReading`` (a no-argument constructor and public fields) is the model of a plain
class. Round trips run through ``SafeSerializer`` and through both backends' snapshot and restore,
with rescaling; a snapshot whose type reference was tampered with (a foreign class, a module
that is not loaded, a class that is only declared elsewhere) is refused by name, with nothing
imported and no constructor or ``__setstate__`` run.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamjob.worker.errors import RestoreError, SerializationError
from streamjob.worker.state.descriptors import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from streamjob.worker.state.operator_state import OperatorStateStore
from streamjob.worker.state.serializers import SafeSerializer, field_encodable, is_plain_class
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

BACKENDS = ["hashmap", "rocksdb"]
CONSTRUCTED: list[str] = []  # every __init__ / __setstate__ run of the classes below


class SensorReading:
    def __init__(self, sensor_id: str | None = None, timestamp: int = 0, value: float = 0.0) -> None:
        CONSTRUCTED.append("SensorReading")
        self.sensor_id = sensor_id
        self.timestamp = timestamp
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is SensorReading and vars(self) == vars(other)

    def __setstate__(self, state: Any) -> None:
        CONSTRUCTED.append("setstate")


@dataclasses.dataclass
class Batch:
    name: str
    readings: list[SensorReading]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class Slotted:
    __slots__ = ("a",)


class NotAllowed:
    def __init__(self) -> None:
        self.x = 1


readings = st.builds(
    SensorReading,
    st.one_of(st.none(), st.text(max_size=20)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10), readings),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def test_plain_classes_are_recognized_as_flink_pojos_are() -> None:
    assert is_plain_class(SensorReading)
    assert not is_plain_class(Slotted) and not is_plain_class(int) and not is_plain_class(dict)
    assert not is_plain_class(Batch)  # dataclasses have their own encoding
    assert field_encodable([SensorReading, Batch, Slotted, len, SensorReading]) == (SensorReading, Batch)  # type: ignore[list-item]


@settings(max_examples=150, deadline=None)
@given(readings)
def test_a_plain_class_round_trips_field_by_field_without_running_its_constructor(reading: SensorReading) -> None:
    serializer = SafeSerializer([SensorReading])
    data = serializer.encode(reading)
    CONSTRUCTED.clear()
    back = serializer.decode(data)
    assert type(back) is SensorReading and back == reading
    assert CONSTRUCTED == []


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=10), st.lists(readings, max_size=5), st.dictionaries(st.text(max_size=5), plain_values))
def test_dataclasses_holding_plain_classes_round_trip(name: str, items: list[SensorReading], extra: Any) -> None:
    serializer = SafeSerializer([Batch, SensorReading])
    back = serializer.decode(serializer.encode(Batch(name, items, extra)))
    assert back == Batch(name, items, extra)
    assert all(type(r) is SensorReading for r in back.readings)


def test_type_hints_declare_plain_classes_nested_in_generics() -> None:
    descriptor = MapStateDescriptor("by-sensor", str, list[SensorReading])
    reading = SensorReading("s", 1, 2.0)
    assert descriptor.serializer.decode(descriptor.serializer.encode({"s": [reading]})) == {"s": [reading]}


def _forged(name: str, fields: Any, code: int = 13) -> bytes:
    """State bytes naming class ``name`` as field-encoded (13: plain class, 7: dataclass)."""
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb([name, fields], use_bin_type=True)), use_bin_type=True)


@pytest.mark.parametrize(
    "name",
    [
        "os.system",  # a function reachable by import
        "subprocess.Popen",  # a class of a module that is loaded, but not declared
        "streamjob_never_loaded_module.Thing",  # a module that is not loaded: must stay so
        f"{__name__}.NotAllowed",  # a plain class of this very module, not declared on this state
        f"{__name__}.SensorReading.__init__.__globals__",  # attribute traversal
    ],
)
def test_a_foreign_type_reference_is_refused_by_name_and_nothing_is_imported(name: str) -> None:
    before = set(sys.modules)
    with pytest.raises(SerializationError, match="not among this state's declared classes"):
        SafeSerializer([SensorReading]).decode(_forged(name, {"x": 1}))
    assert set(sys.modules) == before


@pytest.mark.parametrize(
    "fields", [{"__class__": 1}, {"__dict__": {}}, {"a b": 1}, {1: 2}, ["not", "a", "map"]], ids=str
)
def test_fields_that_are_not_plain_attribute_names_are_refused(fields: Any) -> None:
    with pytest.raises(SerializationError, match=r"fields are not a map|invalid field name"):
        SafeSerializer([SensorReading]).decode(_forged(f"{__name__}.SensorReading", fields))


def test_a_dataclass_reference_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(SerializationError, match="unknown field 'evil'"):
        SafeSerializer([Batch]).decode(_forged(f"{__name__}.Batch", {"name": "n", "evil": 1}, code=7))


def test_plain_class_bytes_naming_a_dataclass_are_refused() -> None:
    with pytest.raises(SerializationError, match="not a plain class"):
        SafeSerializer([Batch]).decode(_forged(f"{__name__}.Batch", {"name": "n"}))


def test_a_value_of_an_undeclared_class_names_the_type_and_the_fix() -> None:
    with pytest.raises(SerializationError, match=r"NotAllowed: .*fix: env.register_type\(NotAllowed\)"):
        SafeSerializer([SensorReading]).encode(NotAllowed())
    with pytest.raises(SerializationError, match=r"Slotted: .*fix: .*serializer=PickleSerializer\(\)"):
        SafeSerializer().encode(Slotted())


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
def test_plain_classes_in_value_list_and_map_state_survive_snapshot_restore_and_rescale(
    kind: str, target: str, tmp_path: Path
) -> None:
    value = ValueStateDescriptor("last", SensorReading)
    listed = ListStateDescriptor("all", SensorReading)
    mapped = MapStateDescriptor("by-bucket", int, SensorReading)
    backend = make_backend(kind, tmp_path, max_parallelism=16)
    states = backend.get_state(value), backend.get_state(listed), backend.get_state(mapped)
    keys = [f"sensor-{i}" for i in range(20)]
    for i, key in enumerate(keys):
        backend.set_current_key(key)
        states[0].update(SensorReading(key, i, i / 2))
        states[1].add_all([SensorReading(key, i, 1.0), SensorReading(key, i + 1, 2.0)])
        states[2].put(i % 3, SensorReading(key, i, 3.0))
    storage = MemoryStorage()
    handles = backend.snapshot()(storage.writer(1))
    seen = set()
    for index in range(2):  # rescale 1 -> 2
        restored = make_backend(target, tmp_path, max_parallelism=16, parallelism=2, index=index)
        restored.restore(handles, storage.reader())
        rstates = restored.get_state(value), restored.get_state(listed), restored.get_state(mapped)
        low, high = key_group_range(16, 2, index)
        for i, key in enumerate(keys):
            if not low <= key_group_for(key, 16) <= high:
                continue
            restored.set_current_key(key)
            seen.add(key)
            assert rstates[0].value() == SensorReading(key, i, i / 2)
            assert rstates[1].get() == [SensorReading(key, i, 1.0), SensorReading(key, i + 1, 2.0)]
            assert rstates[2].items() == [(i % 3, SensorReading(key, i, 3.0))]
    assert seen == set(keys)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_snapshot_with_a_tampered_type_reference_is_refused_when_read(kind: str, tmp_path: Path) -> None:
    """The bytes name a class the restoring descriptor does not declare: a clear error, no instance."""
    writer_side = make_backend("hashmap", tmp_path)
    state = writer_side.get_state(ValueStateDescriptor("last", serializer=SafeSerializer([NotAllowed])))
    writer_side.set_current_key("k")
    state.update(NotAllowed())
    storage = MemoryStorage()
    handles = writer_side.snapshot()(storage.writer(1))
    restored = make_backend(kind, tmp_path)
    restored.restore(handles, storage.reader())
    CONSTRUCTED.clear()
    with pytest.raises((RestoreError, SerializationError), match="NotAllowed', which is not among"):
        rstate = restored.get_state(ValueStateDescriptor("last", SensorReading))
        restored.set_current_key("k")
        rstate.value()  # RocksDB decodes when read
    assert CONSTRUCTED == []


def test_operator_state_holds_the_jobs_plain_classes() -> None:
    store = OperatorStateStore("source", 0, (SensorReading,))
    state = store.get_list_state(ListStateDescriptor("pending"))
    state.add(SensorReading("s", 1, 2.0))
    storage = MemoryStorage()
    handles = store.snapshot()(storage.writer(1))
    restored = OperatorStateStore("source", 0, (SensorReading,))
    restored.restore([handles], storage.reader(), 0, 1)
    assert restored.get_list_state(ListStateDescriptor("pending")).get() == [SensorReading("s", 1, 2.0)]
    other = OperatorStateStore("other")  # not given the job's classes: refused, with the fix
    other.get_list_state(ListStateDescriptor("p")).add(SensorReading())
    with pytest.raises(SerializationError, match=r"SensorReading: .*fix: env.register_type\(SensorReading\)"):
        other.snapshot()(storage.writer(2))


def test_the_internal_state_serializer_must_be_a_serializer() -> None:
    from streamjob.worker.api import PickleSerializer, StreamExecutionEnvironment
    from streamjob.worker.errors import ConfigError

    env = StreamExecutionEnvironment.get_execution_environment()
    assert env.set_internal_state_serializer(PickleSerializer()).internal_state_serializer is not None
    with pytest.raises(ConfigError, match=r"takes a streamjob Serializer \(SafeSerializer\(\), PickleSerializer\(\)\)"):
        env.set_internal_state_serializer("pickle")  # type: ignore[arg-type]
