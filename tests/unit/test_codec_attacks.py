"""The record codec against forged batches: the reproduced exploit and its variants never run code.

Each payload of ``tests/support/codec_payloads.py`` is first shown to be live (an unrestricted
unpickler loading it creates the marker file), then sent to the codec in both batch formats: the
codec must raise ``SerializationError`` and the marker must never appear. The allow-list is the one
a slot builds for the stand-in job ``tests/support/codec_job.py`` (its top-level classes and
registered types), so the job's own ``build`` function is in the module the payloads traverse.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import pickle
import time
import uuid
from collections import OrderedDict, deque
from pathlib import Path

import pytest

from streamjob.worker.errors import SerializationError
from streamjob.worker.loader import LoadedJob, job_record_classes
from streamjob.worker.runtime.codec import PICKLE, ROWS, VALUES, RecordCodec
from tests.support import codec_job
from tests.support.codec_payloads import LIVE, PAYLOADS

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def codec() -> RecordCodec:
    env = codec_job.build()
    return RecordCodec(job_record_classes(LoadedJob(env, "codec-job", codec_job.__name__)))


def _appears(marker: Path, within: float = 1.0) -> bool:
    """Whether the marker exists now or within ``within`` seconds (a spawned process may be slow)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(0.02)
    return marker.exists()


def test_the_job_allow_list_is_exact_classes(codec: RecordCodec) -> None:
    job = codec_job.__name__
    for name in ("Click", "Slotted", "Plain", "Color", "Point", "Registered.Inner"):
        assert codec.allows(job, name), name
    for module, name in [
        (job, "build"),
        (job, "build.__class__"),
        (job, "build.__code__.__class__"),
        (job, "build.__class__.__class__"),
        (job, "Click.__init__"),
        (job, "dataclass"),
        (job, "StreamExecutionEnvironment"),
        ("builtins", "type"),
        ("builtins", "object"),
        ("builtins", "eval"),
        ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"),
        ("os", "system"),
        ("subprocess", "Popen"),
        ("builtins", "getattr"),
    ]:
        assert not codec.allows(module, name), f"{module}.{name}"


@pytest.mark.parametrize("name", sorted(LIVE))
def test_payloads_are_live_against_an_unrestricted_unpickler(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    try:
        pickle.loads(PAYLOADS[name](str(marker)))
    except Exception:
        pass
    assert _appears(marker, within=5.0), f"{name} is not a working exploit, so refusing it proves nothing"


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_forged_batches_are_refused_and_run_nothing(codec: RecordCodec, name: str, tmp_path: Path) -> None:
    # In each batch format, with a marker of its own; then one wait for all three (a spawned process may be slow).
    markers = {
        kind: tmp_path / f"marker-{label}" for kind, label in ((VALUES, "values"), (ROWS, "rows"), (PICKLE, "pickle"))
    }
    for kind, marker in markers.items():
        data = bytes([kind]) + PAYLOADS[name](str(marker))
        with pytest.raises(SerializationError):
            codec.decode(data)
    time.sleep(0.3)  # time for a process the payload might have spawned to create its marker
    ran = [marker.name for marker in markers.values() if marker.exists()]
    assert not ran, f"{name} ran code: {ran}"


def test_the_exploit_names_the_class_and_the_fix(codec: RecordCodec, tmp_path: Path) -> None:
    data = bytes([PICKLE]) + PAYLOADS["function_chain"](str(tmp_path / "m"))
    expected = r"refusing to decode tests\.support\.codec_job\.build\.__class__.*env\.register_type"
    with pytest.raises(SerializationError, match=expected):
        codec.decode(data)


def test_a_batch_that_changes_a_job_class_is_refused_and_undone(codec: RecordCodec, tmp_path: Path) -> None:
    before = dict(vars(codec_job.Click))
    with pytest.raises(SerializationError, match=r"changed the class .*codec_job\.Click"):
        codec.decode(bytes([PICKLE]) + PAYLOADS["mutate_job_class"](str(tmp_path / "m")))
    assert "__setstate__" not in vars(codec_job.Click)
    assert dict(vars(codec_job.Click)) == before
    click = codec_job.Click("a", 1)
    assert codec.decode(codec.encode([click])) == [click]


def test_garbage_and_truncated_batches_raise_serialization_error(codec: RecordCodec) -> None:
    good = codec.encode([codec_job.Click("a", 1), ("b", 2)])
    for data in [
        b"",
        b"\x00",
        b"\x07abc",
        b"\x01",
        b"\x02",
        good[:-1],
        good[: len(good) // 2],
        b"\x01\x80\x05K\x01.",
        b"\x01" + pickle.dumps({"not": "a list"}, protocol=5),
    ]:
        with pytest.raises(SerializationError):
            codec.decode(data)


def test_legitimate_records_round_trip(codec: RecordCodec) -> None:
    records = [
        ("user", 1),
        ("sensor", 0.5, 7),
        2**100,
        -(2**70),
        {"k": [1, (2, 3)], 4: {5}},
        frozenset({1}),
        bytearray(b"ab"),
        None,
        True,
        "ü",
        b"\x00",
        codec_job.Click("a", 1),
        codec_job.Slotted("s", ["x"]),
        codec_job.Plain({"n": (1, 2)}),
        codec_job.Color.GREEN,
        codec_job.Point(1, 2),
        codec_job.Registered.Inner(3),
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.date(2026, 1, 2),
        datetime.time(1, 2),
        datetime.timedelta(seconds=3),
        decimal.Decimal("1.25"),
        uuid.UUID(int=7),
        OrderedDict(a=1),
        deque([1, 2]),
        complex(1, 2),
        datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    ]
    data = codec.encode(records)
    assert data[0] == PICKLE
    decoded = codec.decode(data)
    assert decoded == records
    assert [type(r) for r in decoded] == [type(r) for r in records]


@pytest.mark.parametrize(
    ("records", "kind"),
    [
        ([("a", 1), ("b", 2.5, None), (True, b"x")], PICKLE),
        ([("a", 1, 2), ("b", 2.5), (True, b"x", 3)], PICKLE),
        ([("a", 1, [2, {"k": None}]), ("b", 2, [])], ROWS),
        ([(True, 1), (1, True), (None, 2.5)], ROWS),
        ([1, -(2**63), 2**64 - 1, 2.5, "ü", b"\x00", None, False, [1, [2]]], VALUES),
        ([{"user": "a", "n": 1, 3: None, "tags": ["x"]}], VALUES),
        ([("a", 1), ["a", 1]], PICKLE),
        ([(2**64, -(2**64))], PICKLE),
        ([{(1, 2): [3]}, {1, 2}, ((1,), [2])], PICKLE),
        ([codec_job.Point(1, 2), ("a", 1)], PICKLE),
        ([("\ud800", 1)], PICKLE),
        ([(), ()], PICKLE),
    ],
    ids=[
        "longer-row",
        "shorter-row",
        "rows",
        "bool-vs-int",
        "scalars",
        "dicts",
        "tuple-and-list",
        "big-ints",
        "nested",
        "named-tuple",
        "surrogate",
        "empty-tuples",
    ],
)
def test_plain_values_keep_their_exact_types(codec: RecordCodec, records: list[object], kind: int) -> None:
    data = codec.encode(records)
    assert data[0] == kind
    decoded = codec.decode(data)
    assert decoded == records
    assert _types(decoded) == _types(records)


def _types(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return (type(value), [_types(v) for v in value])
    if isinstance(value, dict):
        return (dict, [(_types(k), _types(v)) for k, v in value.items()])
    return type(value)


def test_a_class_or_function_outside_the_allow_list_is_refused_with_the_fix(codec: RecordCodec) -> None:
    with pytest.raises(SerializationError, match=r"refusing to decode fractions\.Fraction.*env\.register_type\(cls\)"):
        codec.decode(codec.encode([("a", 1), fractions.Fraction(1, 3)]))
    with pytest.raises(SerializationError, match=r"refusing to decode tests\.support\.codec_job\.build"):
        codec.decode(codec.encode([("a", codec_job.build)]))
    assert RecordCodec([fractions.Fraction]).decode(codec.encode([fractions.Fraction(1, 3)])) == [
        fractions.Fraction(1, 3)
    ]


@pytest.mark.parametrize(
    "stream",
    [
        b"\x80\x05N" + pickle.LONG_BINPUT + (2**27).to_bytes(4, "little") + b".",  # a 2 GiB memo
        b"\x80\x05Np134217728\n.",  # the same through the text PUT
        b"\x80\x05" + pickle.BYTEARRAY8 + (2**40).to_bytes(8, "little") + b"x.",  # a 1 TiB bytearray
        b"\x80\x05" + pickle.FRAME + (2**40).to_bytes(8, "little") + b"N.",
        b"\x80\x05" + pickle.BINUNICODE8 + (2**33).to_bytes(8, "little") + b"x.",
        b"\x80\x05N.trailing",
        b"\x80\x05N",
        b"\x80\x05J\x01",
        b"\x80\x05\x95\x01",
    ],
    ids=[
        "long-binput",
        "put",
        "bytearray8",
        "frame",
        "binunicode8",
        "trailing-bytes",
        "no-stop",
        "cut-int",
        "cut-frame",
    ],
)
def test_sizes_beyond_the_batch_are_refused_before_anything_is_allocated(codec: RecordCodec, stream: bytes) -> None:
    with pytest.raises(
        SerializationError, match=r"refusing the pickle opcode|announces|after its end|before its STOP|inside an opcode"
    ):
        codec.decode(bytes([PICKLE]) + stream)


def test_the_allow_list_of_a_job_file_holds_exactly_its_top_level_classes(tmp_path: Path) -> None:
    job = tmp_path / "codec_file_job.py"
    job.write_text(
        "import subprocess\n"
        "from dataclasses import dataclass\n"
        "from streamjob.worker.api import StreamExecutionEnvironment\n"
        "@dataclass\n"
        "class Event:\n"
        "    key: str\n"
        "class Helper:\n"
        "    class Nested:\n"
        "        pass\n"
        "Alias = subprocess.Popen\n"
        "def build():\n"
        "    env = StreamExecutionEnvironment.get_execution_environment()\n"
        "    env.from_collection([Event('a')]).print()\n"
        "    return env\n"
    )
    from streamjob.worker.loader import load_job

    loaded = load_job(str(job))
    classes = {f"{c.__module__}.{c.__qualname__}" for c in job_record_classes(loaded)}
    assert classes == {"codec_file_job.Event", "codec_file_job.Helper"}
