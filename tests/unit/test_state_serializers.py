from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import pickle
from typing import NamedTuple

import pytest

from streamjob.worker.errors import SerializationError
from streamjob.worker.state.descriptors import ListStateDescriptor, ValueStateDescriptor
from streamjob.worker.state.serializers import PickleSerializer, SafeSerializer

pytestmark = pytest.mark.unit


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@dataclasses.dataclass
class Order:
    id: str
    at: Point
    side: Side
    tags: set[str]


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("owned",))


def test_safe_round_trips_builtin_types() -> None:
    value = {
        "t": (1, (2, "x")),
        "s": {1, 2},
        "f": frozenset({"a"}),
        "b": b"\x00\xff",
        "dt": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        "naive": dt.datetime(2024, 5, 1, 12, 30, 1, 5),
        "d": dt.date(2024, 5, 1),
        "td": dt.timedelta(seconds=90),
        "dec": decimal.Decimal("10.50"),
        "big": 2**80,
        (1, 2): None,
        "nested": [[1.5, True], {"k": (None,)}],
    }
    serializer = SafeSerializer()
    assert serializer.decode(serializer.encode(value)) == value
    assert isinstance(serializer.decode(serializer.encode((1,))), tuple)


def test_declared_dataclasses_round_trip_via_descriptor_hints() -> None:
    descriptor = ValueStateDescriptor("orders", Order)
    order = Order("o1", Point(1, 2.5), Side.SELL, {"x"})
    assert descriptor.serializer.decode(descriptor.serializer.encode(order)) == order


def test_undeclared_dataclass_is_refused_both_ways() -> None:
    declared = SafeSerializer(declared_types=[Point])
    data = declared.encode(Point(1, 2.0))
    with pytest.raises(SerializationError, match=r"not among this state.s declared classes"):
        SafeSerializer().decode(data)
    with pytest.raises(SerializationError, match=r"fix: env.register_type\(Point\)"):
        SafeSerializer().encode(Point(1, 2.0))


def test_safe_never_unpickles() -> None:
    with pytest.raises(SerializationError):
        SafeSerializer().decode(pickle.dumps(Evil()))
    with pytest.raises(SerializationError):
        SafeSerializer().encode(Evil())


def test_pickle_round_trip_is_opt_in() -> None:
    serializer = PickleSerializer()
    value = {"p": Point(1, 2.0), "o": [Side.BUY]}
    assert serializer.decode(serializer.encode(value)) == value
    assert serializer.serializer_id == "pickle"
    assert ValueStateDescriptor("x").serializer.serializer_id == "safe"
    assert ValueStateDescriptor("x", serializer=serializer).serializer is serializer


def test_safe_serializer_is_thread_safe() -> None:
    import threading

    serializer = SafeSerializer()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                value = [n, i, (n, str(i))]
                assert serializer.decode(serializer.encode(value)) == value
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_descriptors_with_safe_serializers_pickle_and_copy() -> None:
    import copy

    descriptor = ValueStateDescriptor("orders", Order, None)
    for clone in (pickle.loads(pickle.dumps(descriptor)), copy.deepcopy(descriptor)):
        order = Order("o1", Point(1, 2.5), Side.BUY, set())
        assert clone.serializer.decode(clone.serializer.encode(order)) == order
        assert clone.name == "orders"


class Tick(NamedTuple):
    symbol: str
    price: float


def test_named_tuples_are_declarable() -> None:
    serializer = ListStateDescriptor("ticks", Tick).serializer
    value = [Tick("A", 1.5), (1, 2)]
    decoded = serializer.decode(serializer.encode(value))
    assert decoded == value and type(decoded[0]) is Tick and type(decoded[1]) is tuple
    with pytest.raises(SerializationError, match=r"not among this state.s declared classes"):
        SafeSerializer().decode(serializer.encode(Tick("A", 1.0)))
    with pytest.raises(SerializationError, match="only declare"):
        SafeSerializer(declared_types=[dict])


@pytest.mark.parametrize(
    "value",
    [(), (1,), ("a", 2), (1, "x" * 300), tuple(range(20)), tuple("y" * 70_000 for _ in range(1)), (None, True, 1.5)],
)
def test_flat_tuple_fast_path_is_byte_identical_to_the_extension(value: tuple[object, ...]) -> None:
    import msgpack

    expected = msgpack.packb(msgpack.ExtType(1, msgpack.packb(list(value), use_bin_type=True)), use_bin_type=True)
    serializer = SafeSerializer()
    assert serializer.encode(value) == expected
    assert serializer.decode(expected) == value
    nested = (value, {1, 2}, 2**70)
    assert serializer.decode(serializer.encode(nested)) == nested
