"""Frames: how both internal planes cut a TCP stream, with every limit checked before any allocation.

A frame is ``u32 length | u8 kind | u32 edge | u32 producer | u32 consumer | payload`` (big-endian;
``length`` counts everything after itself). The control channel sends only MESSAGE frames (channel
``0/0/0``); the data plane sends DATA (a record batch), EVENT (a barrier or end of stream) and
CREDIT frames on a channel, and MESSAGE frames for its handshake. ``read_frame`` checks the kind
and the length against the caller's limit from the 17 header bytes alone, so a peer announcing
4 GiB costs nothing; the checks are per frame (per batch), never per record.

``Limits`` holds the defaults: 64 KiB frames and 5 s until a connection is authenticated, at most
16 connections per listener in that state, 64 MiB for a control message or a data batch after it.
Used by ``handshake``, ``runtime/network.py``, ``jobmaster/control.py`` and ``slot.py``.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum

from streamjob.worker.protocol.messages import ProtocolError

HEADER = struct.Struct(">IBIII")
_AFTER_LENGTH = HEADER.size - 4
_CREDIT = struct.Struct(">I")
NO_CHANNEL = (0, 0, 0)

ChannelKey = tuple[int, int, int]
"""(edge number in the job graph, producer subtask, consumer subtask)."""

MIB = 1024 * 1024


class FrameKind(IntEnum):
    """What a frame carries."""

    MESSAGE = 0
    """A typed message (``messages``): the handshake, every control message."""
    DATA = 1
    """A record batch (``runtime.codec.RecordCodec``)."""
    EVENT = 2
    """A typed event (``messages.encode_event``): a barrier or the end of a channel."""
    CREDIT = 3
    """A u32 number of credits the consumer returns."""


_KINDS = max(FrameKind)


@dataclass(frozen=True)
class Limits:
    """Sizes and times that bound what a peer can make a listener hold."""

    handshake_bytes: int = 64 * 1024
    """Largest frame before the peer is authenticated (a Hello is ~150 bytes)."""
    handshake_timeout_s: float = 5.0
    """A connection that has not completed its handshake by then is dropped."""
    pending_handshakes: int = 16
    """Connections per listener still in their handshake; more are refused at once."""
    message_bytes: int = 64 * MIB
    """Largest control message (a deployment carries the restore plan's handles)."""
    data_frame_bytes: int = 64 * MIB
    """Largest record batch (``JobConfig.max_frame_bytes``)."""


class FrameError(ProtocolError):
    """The stream does not hold a valid frame within the limits; the connection is dropped."""


def frame(kind: FrameKind, key: ChannelKey, payload: bytes) -> bytes:
    """One frame's bytes."""
    return HEADER.pack(len(payload) + _AFTER_LENGTH, kind, key[0], key[1], key[2]) + payload


def credit_frame(key: ChannelKey, credits: int) -> bytes:
    """A CREDIT frame returning ``credits`` on ``key``."""
    return frame(FrameKind.CREDIT, key, _CREDIT.pack(credits))


def parse_credit(payload: bytes) -> int:
    """The number of credits a CREDIT frame returns."""
    if len(payload) != _CREDIT.size:
        raise FrameError(f"a credit frame holds {len(payload)} bytes instead of {_CREDIT.size}")
    return int(_CREDIT.unpack(payload)[0])


async def read_frame(reader: asyncio.StreamReader, max_payload: int) -> tuple[int, ChannelKey, bytes]:
    """The next frame: (kind, channel, payload); ``FrameError`` before reading a payload that breaks a limit."""
    length, kind, edge, producer, consumer = HEADER.unpack(await reader.readexactly(HEADER.size))
    if kind > _KINDS:
        raise FrameError(f"unknown frame kind {kind}")
    size = length - _AFTER_LENGTH
    if size < 0:
        raise FrameError(f"frame length {length} is shorter than the frame header")
    if size > max_payload:
        raise FrameError(f"a frame of {size} bytes exceeds the limit of {max_payload} bytes")
    return kind, (edge, producer, consumer), await reader.readexactly(size) if size else b""
