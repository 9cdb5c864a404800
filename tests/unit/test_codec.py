"""Wire encodings (``streamjob.worker.runtime.codec``): a peer can never make a worker run code."""

from __future__ import annotations

import datetime
import decimal
import os
import pickle
import subprocess
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import pytest

from streamjob.worker.errors import MetadataError, SerializationError
from streamjob.worker.runtime.codec import PICKLE, ROWS, VALUES, RecordCodec
from streamjob.worker.snapshot.metadata import decode_metadata

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Reading:
    sensor: str
    value: float


class Evil:
    """Pickles into a call of ``target(*args)`` on load."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.target = target
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.target, self.args)


def helper() -> None:
    """A module-level function: a global that is not a class."""


def test_plain_values_round_trip() -> None:
    codec = RecordCodec()
    records = [
        1,
        -2.5,
        "x",
        b"raw",
        None,
        True,
        (1, "a"),
        [1, [2]],
        {"k": {1, 2}},
        frozenset({3}),
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.date(2026, 1, 2),
        datetime.timedelta(seconds=3),
        decimal.Decimal("1.25"),
        uuid.UUID(int=7),
        OrderedDict(a=1),
        deque([1, 2]),
        complex(1, 2),
        bytearray(b"ab"),
    ]
    assert codec.decode(codec.encode(records)) == records


@pytest.mark.parametrize(
    "payload",
    [
        Evil(os.system, "touch /tmp/streamjob-codec-pwned"),
        Evil(eval, "1 + 1"),
        Evil(exec, "import os"),
        Evil(getattr, Reading, "__init__"),
        Evil(subprocess.Popen, ["true"]),
        Evil(__import__, "os"),
    ],
    ids=["os.system", "eval", "exec", "getattr", "Popen", "__import__"],
)
def test_dangerous_globals_are_refused(payload: Evil) -> None:
    data = bytes([PICKLE]) + pickle.dumps([payload], protocol=5)
    with pytest.raises(SerializationError, match="refusing to decode"):
        RecordCodec([Reading, Evil]).decode(data)
    assert not os.path.exists("/tmp/streamjob-codec-pwned")


def test_unregistered_classes_are_refused_with_the_fix_in_the_message() -> None:
    data = RecordCodec([Reading]).encode([Reading("a", 1.0)])
    with pytest.raises(SerializationError, match=r"test_codec\.Reading.*env\.register_type"):
        RecordCodec().decode(data)


def test_registered_types_are_allowed_by_exact_name_only() -> None:
    codec = RecordCodec([Reading])
    data = codec.encode([Reading("a", 1.0), Reading("b", 2.0)])
    assert data[0] == PICKLE
    assert codec.decode(data) == [Reading("a", 1.0), Reading("b", 2.0)]
    assert codec.allows(Reading.__module__, "Reading")
    assert not codec.allows(Reading.__module__, "Reading.__class__")
    assert not codec.allows(Reading.__module__, "helper")
    assert not codec.allows("os", "system")


def test_plain_batches_are_msgpack_and_a_pickle_under_their_format_byte_is_garbage() -> None:
    codec = RecordCodec([Reading])
    assert codec.encode([("a", 1), ("b", 2)])[0] == ROWS
    assert codec.encode([1, "x", None, b"y", 2.5, True, [{"k": [1]}]])[0] == VALUES
    pickled = pickle.dumps([Reading("a", 1.0)], protocol=5)
    for kind in (VALUES, ROWS):
        with pytest.raises(SerializationError, match=r"could not be decoded|does not hold columns"):
            codec.decode(bytes([kind]) + pickled)


def test_functions_of_the_job_module_are_refused() -> None:
    data = bytes([PICKLE]) + pickle.dumps([helper], protocol=5)
    with pytest.raises(SerializationError, match=r"refusing to decode tests\.unit\.test_codec\.helper"):
        RecordCodec([Reading]).decode(data)
    with pytest.raises(SerializationError, match=r"refusing to decode tests\.unit\.test_codec\.helper"):
        RecordCodec([Reading]).decode(RecordCodec().encode([helper]))


def test_unpicklable_records_name_the_fix() -> None:
    with pytest.raises(SerializationError, match="cannot be sent between workers"):
        RecordCodec().encode([lambda: None])


def test_metadata_is_never_unpickled() -> None:
    data = pickle.dumps(Evil(os.system, "touch /tmp/streamjob-codec-pwned"))
    with pytest.raises(MetadataError, match="corrupted"):
        decode_metadata(data, source="s3://bucket/chk-1/_metadata")
    assert not os.path.exists("/tmp/streamjob-codec-pwned")
