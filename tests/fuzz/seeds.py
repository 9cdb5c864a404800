"""Writes the seed corpus of every fuzz target under ``tests/fuzz/corpus/<target>/``.

``python -m tests.fuzz.seeds`` (re)writes the seeds: valid encodings of real record batches,
``_metadata`` and lineage files, data-plane frames and control messages, plus the attack
payloads of ``tests/support/codec_payloads.py`` and a few known-bad inputs (a memo bomb, deep
nesting, bad lengths). File names are the SHA-1 of the content, as libFuzzer names its inputs, so
rewriting is idempotent and inputs kept from fuzzing findings sit beside them.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import pickle
import uuid
from pathlib import Path

import msgpack

from streamjob.worker.protocol.events import END_OF_STREAM, Barrier
from streamjob.worker.protocol.framing import HEADER, FrameKind, credit_frame, frame
from streamjob.worker.protocol.messages import (
    PROTOCOL_VERSION,
    Hello,
    Register,
    encode,
    encode_event,
)
from streamjob.worker.runtime.codec import PICKLE, VALUES
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import (
    CheckpointMetadata,
    JobLineage,
    OperatorSnapshot,
    SubtaskSnapshot,
    encode_lineage,
    encode_metadata,
)
from tests.fuzz.run import CORPUS
from tests.fuzz.targets import _CODEC
from tests.support import codec_job
from tests.support.codec_payloads import PAYLOADS

_MARKER = "/tmp/streamjob-fuzz-marker"


def record_batches() -> list[bytes]:
    batches: list[list[object]] = [
        [(i % 10_000, 1) for i in range(64)],
        [(f"user-{i}", i) for i in range(32)],
        [(f"sensor-{i}", i * 0.5, 1_700_000_000_000 + i) for i in range(32)],
        [{"user": "a", "n": 1, "tags": ["x", "y"]}, None, True, b"raw", bytearray(b"ba"), {1, 2}, frozenset({3})],
        [2**100, -(2**70), ((1, 2), [3, (4,)]), "ü\u2028"],
        [
            codec_job.Click("a", 1),
            codec_job.Slotted("s", ["t"]),
            codec_job.Plain({"x": 1}),
            codec_job.Color.RED,
            codec_job.Point(1, 2),
            codec_job.Registered.Inner(4),
        ],
        [
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            datetime.date(2026, 1, 2),
            datetime.time(1, 2),
            datetime.timedelta(days=1),
            decimal.Decimal("1.5"),
            uuid.UUID(int=9),
            complex(1, 2),
        ],
        [],
    ]
    seeds = [_CODEC.encode(b) for b in batches]
    for build in PAYLOADS.values():
        payload = build(_MARKER)
        seeds += [bytes([PICKLE]) + payload, bytes([VALUES]) + payload]
    seeds += [
        bytes([PICKLE]) + b"\x80\x05N" + pickle.LONG_BINPUT + (2**27).to_bytes(4, "little") + b".",  # memo bomb
        bytes([PICKLE]) + b"\x80\x05" + b"(" * 5000 + b"l" * 5000 + b".",
        bytes([PICKLE]) + b"\x80\x05" + b"]" * 3000 + b"a" * 2999 + b".",
        b"",
        b"\x00",
        b"\x03",
        bytes([PICKLE]),
        bytes([PICKLE]) + b"\x80\x05\x95" + b"\xff" * 8,
    ]
    return seeds


def metadata_files() -> list[bytes]:
    handle = StateHandle(
        path="chk-3/sums/0/sums-kg0-63.keyed", size=1234, sha256="ab" * 32, key_group_start=0, key_group_end=63
    )
    meta = CheckpointMetadata(
        kind="checkpoint",
        checkpoint_id=3,
        job_id="j1",
        job_name="job",
        namespace="local",
        trigger_timestamp_ms=1,
        completion_timestamp_ms=2,
        duration_ms=1,
        total_size=1234,
        max_parallelism=128,
        mode="EXACTLY_ONCE",
        operators={
            "sums": OperatorSnapshot(
                uid="sums",
                name="sum",
                parallelism=1,
                max_parallelism=128,
                subtasks=[SubtaskSnapshot(subtask_index=0, keyed=[handle])],
            )
        },
        source_positions={"src": [1, "a"]},
    )
    good = encode_metadata(meta)
    return [
        good,
        good[: len(good) // 2],
        good.replace(b'"format_version": 1', b'"format_version": 99'),
        encode_lineage(JobLineage(job_id="j1", created_at="2026-01-01T00:00:00Z", restored_from=None)),
        b"[" * 5000,
        b'{"format_version": 1, "kind": ' + b"9" * 5000 + b"}",
        b"\xff\xfe",
        b"null",
        b"{}",
        pickle.dumps(PAYLOADS["os_system"](_MARKER)),
    ]


def _frame(kind: FrameKind, payload: bytes, key: tuple[int, int, int] = (0, 0, 1)) -> bytes:
    return frame(kind, key, payload)


def _hello() -> bytes:
    return encode(Hello(version=PROTOCOL_VERSION, nonce=b"n" * 32, proof=b"p" * 32, attempt=0, token="t"))


def data_streams() -> list[bytes]:
    hello = _frame(FrameKind.MESSAGE, _hello(), (0, 0, 0))
    data = _frame(FrameKind.DATA, _CODEC.encode([("a", 1), ("b", 2)]))
    event = _frame(FrameKind.EVENT, encode_event(Barrier(3, 1_700_000_000_000, None, False, True)))
    eos = _frame(FrameKind.EVENT, encode_event(END_OF_STREAM))
    credit = credit_frame((0, 0, 1), 2)
    exploit = _frame(FrameKind.DATA, bytes([PICKLE]) + PAYLOADS["function_chain"](_MARKER))
    return [
        hello + data + event + data + eos,
        hello + credit + credit,
        hello + exploit,
        hello + data[:-3],
        HEADER.pack(5, FrameKind.DATA, 0, 0, 1),
        HEADER.pack(2**32 - 1, FrameKind.DATA, 0, 0, 1),
        hello + _frame(FrameKind.CREDIT, b"\x00"),
        hello + _frame(FrameKind.EVENT, msgpack.packb(["B", "x", 1, None, 0, 0])),
        hello + _frame(FrameKind.EVENT, msgpack.packb({"t": "barrier", "barrier": {"id": "x"}})),
    ]


def control_messages() -> list[bytes]:
    return [
        _hello(),
        encode(Register(data_host="10.0.0.1", data_port=6124, pid=42)),
        msgpack.packb({"t": "ack", "cp": 3, "states": {"uid": {"keyed": [{"path": "p", "size": 1}]}}, 1: b"x"}),
        msgpack.packb({"t": "deploy", "config": {"entrypoint": "job.py", "args": []}, "slot_index": 0}),
        msgpack.packb({"t": "register", "data": ["10.0.0.1", 6124], "pid": 42}),
        b"\x81\x91\x01\x02",  # a map whose key is an array (unhashable)
        b"\x91" * 2000,
        b"\xc1",
        b"\xdd\xff\xff\xff\xff",
        pickle.dumps(PAYLOADS["os_system"](_MARKER)),
    ]


SEEDS = {
    "record_codec": record_batches,
    "metadata": metadata_files,
    "data_frames": data_streams,
    "control_message": control_messages,
}


def write(corpus: Path = CORPUS) -> None:
    for name, make in SEEDS.items():
        folder = corpus / name
        folder.mkdir(parents=True, exist_ok=True)
        for data in make():
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    write()
