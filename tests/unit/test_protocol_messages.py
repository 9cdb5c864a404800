"""The typed protocol (``streamjob.worker.protocol.messages``): every message round-trips through the one
codec, and anything else (unknown kinds, wrong types, extra fields, non-maps, pickles) is one ``ProtocolError``."""

from __future__ import annotations

import asyncio
import os
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from streamjob.worker.config import CheckpointSettings, JobConfig
from streamjob.worker.protocol import messages as m
from streamjob.worker.protocol.events import END_OF_STREAM, Barrier
from streamjob.worker.snapshot.handles import StateHandle

pytestmark = pytest.mark.unit

HANDLE = StateHandle(path="chk-3/sums/0/x.keyed", size=10, sha256="ab" * 32, key_group_start=0, key_group_end=63)

TO_SLOT: list[BaseModel] = [
    m.Deploy(
        attempt=2,
        job_id="j1",
        token="t" * 32,
        config=JobConfig(name="job", entrypoint="job.py"),
        settings=CheckpointSettings(),
        backend="hashmap",
        incremental=False,
        batch_size=4096,
        fingerprint="f" * 16,
        slot_index=1,
        slots=[m.SlotAddress(slot=0, host="10.0.0.1", port=4000)],
        checkpoints_uri="file:///tmp/c",
        savepoints_uri=None,
        restore_base="file:///tmp/c/j1",
        restore={
            "v1/1": m.SubtaskRestore(
                keyed={"sums": [HANDLE]},
                operator={"src": [[HANDLE], []]},
                in_flight=[HANDLE],
                filter_in_flight_by_key=True,
            )
        },
    ),
    m.Start(),
    m.Trigger(barrier=m.BarrierSpec(id=4, timestamp_ms=17, savepoint_dir="file:///sp", stop=True, unaligned=False)),
    m.Notify(cp=4),
    m.Abort(cp=5),
    m.Finish(),
    m.Cancel(),
    m.Bye(outcome="failed"),
    m.Release(attempt=3),
    m.Ping(),
]
TO_JOBMASTER: list[BaseModel] = [
    m.Register(data_host="127.0.0.1", data_port=4001, pid=123),
    m.Prepared(tasks=3),
    m.Released(attempt=3),
    m.Ack(
        cp=4,
        vertex="v1",
        subtask=0,
        states={"sums": {"keyed": [HANDLE], "operator": []}},
        stats={"alignment_ms": 0.5, "size": 10.0},
        positions=[{"split": "a", "offset": 7}, [1, 2]],
        records_in=10,
        records_out=9,
    ),
    m.Decline(cp=4, vertex="v1", subtask=1, reason="slow", subsumed=True),
    m.TaskFailed(vertex="v1", subtask=0, error="ValueError: x", corrupt_restore=True),
    m.SlotFailed(error="lost a peer"),
    m.EndOfInput(vertex="v0", subtask=1, records_in=5, records_out=5),
    m.SlotFinished(),
    m.Metrics(tasks=[m.TaskCounters(vertex="v0", subtask=0, records_in=1, records_out=2, backpressured_s=0.25)]),
]


@pytest.mark.parametrize("message", TO_SLOT, ids=lambda x: type(x).__name__)
def test_every_message_to_a_slot_round_trips(message: BaseModel) -> None:
    assert m.decode(m.encode(message), m.TO_SLOT) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("message", TO_JOBMASTER, ids=lambda x: type(x).__name__)
def test_every_message_to_the_jobmaster_round_trips(message: BaseModel) -> None:
    assert m.decode(m.encode(message), m.TO_JOBMASTER) == message  # type: ignore[arg-type]


def test_every_declared_kind_is_covered_by_the_round_trips() -> None:
    declared = {cls for union in (m.ToSlot, m.ToJobMaster) for cls in union.__origin__.__args__}  # type: ignore[attr-defined]
    assert declared == {type(x) for x in TO_SLOT + TO_JOBMASTER}


def test_handshake_messages_round_trip() -> None:
    for message, schema in (
        (m.Challenge(version=1, nonce=b"n" * 32), m.CHALLENGE),
        (m.Hello(version=1, nonce=b"c" * 32, proof=b"p" * 32, attempt=3, token="tok"), m.HELLO),
        (m.Welcome(proof=b"w" * 32), m.WELCOME),
    ):
        assert m.decode(m.encode(message), schema) == message  # type: ignore[arg-type]


def test_barriers_have_one_encoding_for_the_trigger_and_the_data_plane() -> None:
    barrier = Barrier(7, 1234, "file:///sp", stop=True, unaligned=True)
    assert m.decode_event(m.encode_event(barrier)) == barrier
    assert m.decode_event(m.encode_event(END_OF_STREAM)) is END_OF_STREAM
    trigger = m.decode(m.encode(m.Trigger(barrier=m.BarrierSpec.of(barrier))), m.TO_SLOT)
    assert isinstance(trigger, m.Trigger) and trigger.barrier.to_barrier() == barrier
    event = msgpack.unpackb(m.encode_event(barrier))
    assert event["barrier"] == msgpack.unpackb(m.encode(trigger))["barrier"]


def raw(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (raw(t="deployed", tasks=1), "'deployed'"),  # sent by the old slots and never read: gone
        (raw(t="task_finished", vertex="v", subtask=0), "'task_finished'"),
        (raw(t="bogus"), "'bogus'"),
        (raw(tasks=1), "without a valid kind"),
        (raw(t="prepared", tasks="1"), "tasks: Input should be a valid integer"),
        (raw(t="prepared", tasks=True), "tasks: Input should be a valid integer"),
        (raw(t="prepared", tasks=1, extra=2), "extra: Extra inputs are not permitted"),
        (raw(t="prepared"), "tasks: Field required"),
        (raw(t="register", data_host="h", data_port=0, pid=1), "data_port"),
        (
            raw(
                t="ack",
                cp=1,
                vertex="v",
                subtask=0,
                states={"u": {"keyed": [{"path": 1}]}},
                stats={},
                positions=[],
                records_in=0,
                records_out=0,
            ),
            "states.u.keyed.0",
        ),
        (msgpack.packb([1, 2, 3]), "must be a map, got list"),
        (msgpack.packb("hello"), "must be a map, got str"),
        (b"\xc1", "not a msgpack message"),
        (msgpack.packb({"t": "prepared", "tasks": 1}) + b"\x00", "not a msgpack message"),
        (b"", "not a msgpack message"),
        (pickle.dumps({"t": "prepared", "tasks": 1}), "not a msgpack message"),
        (msgpack.packb({(1, 2): 1}), ""),
    ],
)
def test_anything_else_is_one_protocol_error(data: bytes, expected: str) -> None:
    with pytest.raises(m.ProtocolError) as caught:
        m.decode(data, m.TO_JOBMASTER)
    message = str(caught.value)
    assert expected in message and "\n" not in message and len(message) < 400


def test_a_slot_message_is_not_accepted_where_the_jobmaster_speaks() -> None:
    with pytest.raises(m.ProtocolError, match="'register'"):
        m.decode(m.encode(m.Register(data_host="h", data_port=1, pid=1)), m.TO_SLOT)
    with pytest.raises(m.ProtocolError, match="'deploy'"):
        m.decode(m.encode(TO_SLOT[0]), m.TO_JOBMASTER)  # type: ignore[arg-type]


def test_a_pickle_never_runs() -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("touch /tmp/streamjob-protocol-pwned",))

    with pytest.raises(m.ProtocolError):
        m.decode(pickle.dumps(Evil()), m.TO_SLOT)
    assert not os.path.exists("/tmp/streamjob-protocol-pwned")


def test_an_invalid_event_is_a_protocol_error() -> None:
    with pytest.raises(m.ProtocolError, match="barrier"):
        m.decode_event(raw(t="barrier", barrier={"id": "1", "timestamp_ms": 0}))
    with pytest.raises(m.ProtocolError):
        m.decode_event(msgpack.packb(["B", 1, 2, None, False, False]))  # the old list encoding


KINDS = sorted({x.t for x in TO_SLOT + TO_JOBMASTER})  # type: ignore[attr-defined]
FIELD_NAMES = sorted({name for x in TO_SLOT + TO_JOBMASTER for name in type(x).model_fields} - {"t"})
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
_values = st.recursive(
    _scalars | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_are_a_message_or_one_protocol_error(data: bytes) -> None:
    for schema in (m.TO_SLOT, m.TO_JOBMASTER):
        try:
            m.decode(data, schema)  # type: ignore[arg-type]
        except m.ProtocolError as err:
            assert "\n" not in str(err)
    try:
        m.decode_event(data)
    except m.ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(KINDS), fields=st.dictionaries(st.sampled_from(FIELD_NAMES), _values, max_size=4))
def test_wrong_fields_of_a_known_kind_are_one_protocol_error(kind: str, fields: dict[str, Any]) -> None:
    data = msgpack.packb({"t": kind, **fields}, use_bin_type=True)
    for schema in (m.TO_SLOT, m.TO_JOBMASTER):
        try:
            message = m.decode(data, schema)  # type: ignore[arg-type]
        except m.ProtocolError as err:
            assert len(str(err)) < 400 and "\n" not in str(err)
        else:  # accepted: then it is exactly what re-encoding it gives
            assert m.decode(m.encode(message), schema) == message  # type: ignore[arg-type]


def test_deep_nesting_is_one_protocol_error() -> None:
    deep = b"\x91" * 100_000 + b"\xc0"  # 100,000 nested one-element arrays: msgpack's stack limit, no recursion
    with pytest.raises(m.ProtocolError, match="not a msgpack message"):
        m.decode(deep, m.TO_SLOT)
    nested_map = msgpack.packb({"t": "metrics", "tasks": [[[[[[[]]]]]]]})
    with pytest.raises(m.ProtocolError, match=r"tasks\.0"):
        m.decode(nested_map, m.TO_JOBMASTER)


def test_an_oversized_control_message_is_refused_from_its_header() -> None:
    """A message over the control limit never reaches ``decode``: framing refuses its announced length."""
    from streamjob.worker.protocol.framing import NO_CHANNEL, FrameError, FrameKind, Limits, frame, read_frame

    limit = Limits().message_bytes
    big = m.encode(m.SlotFailed(error="x" * (limit + 1)))

    async def read() -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(FrameKind.MESSAGE, NO_CHANNEL, big)[:64])  # only the start: the rest never comes
        return await asyncio.wait_for(read_frame(reader, limit), 2.0)

    with pytest.raises(FrameError, match="exceeds the limit"):
        asyncio.run(read())
