"""Frames (``streamjob.worker.protocol.framing``): limits are checked from the header, before the payload is read."""

from __future__ import annotations

import asyncio
import struct

import pytest

from streamjob.worker.protocol.framing import (
    HEADER,
    FrameError,
    FrameKind,
    credit_frame,
    frame,
    parse_credit,
    read_frame,
)

pytestmark = pytest.mark.unit


def reader_with(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def read(data: bytes, limit: int = 1024, *, eof: bool = True) -> tuple[int, tuple[int, int, int], bytes]:
    async def go() -> tuple[int, tuple[int, int, int], bytes]:
        return await asyncio.wait_for(read_frame(reader_with(data, eof=eof), limit), 2.0)

    return asyncio.run(go())


def test_frames_round_trip() -> None:
    assert read(frame(FrameKind.DATA, (3, 1, 2), b"batch")) == (FrameKind.DATA, (3, 1, 2), b"batch")
    assert read(frame(FrameKind.EVENT, (0, 0, 0), b"")) == (FrameKind.EVENT, (0, 0, 0), b"")
    kind, key, payload = read(credit_frame((1, 2, 3), 5))
    assert (kind, key, parse_credit(payload)) == (FrameKind.CREDIT, (1, 2, 3), 5)


def test_a_payload_at_the_limit_is_read() -> None:
    assert read(frame(FrameKind.DATA, (0, 0, 0), b"x" * 1024), 1024)[2] == b"x" * 1024


def test_an_announced_size_over_the_limit_is_refused_before_its_payload_arrives() -> None:
    # no payload follows and the stream does not end: reading it would wait forever
    head = HEADER.pack(0xFFFFFFFF, FrameKind.DATA, 0, 0, 0)
    with pytest.raises(FrameError, match="exceeds the limit of 1024 bytes"):
        read(head, eof=False)
    with pytest.raises(FrameError, match="exceeds the limit"):
        read(frame(FrameKind.DATA, (0, 0, 0), b"x" * 1025), 1024)


@pytest.mark.parametrize("length", [0, 1, 12])
def test_a_length_shorter_than_the_header_is_refused(length: int) -> None:
    with pytest.raises(FrameError, match="shorter than the frame header"):
        read(HEADER.pack(length, FrameKind.DATA, 0, 0, 0), eof=False)


@pytest.mark.parametrize("kind", [4, 7, 255])
def test_an_unknown_kind_is_refused(kind: int) -> None:
    with pytest.raises(FrameError, match=f"unknown frame kind {kind}"):
        read(HEADER.pack(13, kind, 0, 0, 0))


def test_a_credit_frame_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(FrameError, match="credit frame holds 2 bytes"):
        parse_credit(b"\x00\x01")
    assert parse_credit(struct.pack(">I", 8)) == 8


def test_a_truncated_frame_is_an_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(frame(FrameKind.DATA, (0, 0, 0), b"abcdef")[:-2])
