"""The data plane between slot processes: framed TCP connections carrying channels.

Each slot process runs one ``DataServer``. A producer opens one connection per peer process and
multiplexes all its channels to that peer over it; the consumer writes credits back on the same
connection. Frames: ``u32 length | u8 kind | u32 edge | u32 producer | u32 consumer | payload``.
A connection starts with a HELLO carrying the job's token and attempt, so stale processes of an
earlier attempt or strangers are refused. Used by ``slot`` (setup) and ``task`` (channels).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from streamjob.worker.errors import SerializationError
from streamjob.worker.runtime.channels import ChannelKey, InputChannel, OutputChannel
from streamjob.worker.runtime.codec import RecordCodec, pack, unpack
from streamjob.worker.runtime.events import Barrier, EndOfStream, event_from_wire

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">IBIII")
_CREDIT = struct.Struct(">I")
HELLO, DATA, EVENT, CREDIT = 0, 1, 2, 3


def _frame(kind: int, key: ChannelKey, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload) + 13, kind, key[0], key[1], key[2]) + payload


class FrameError(SerializationError):
    """A data-plane frame is malformed (a length shorter than its header, a credit of the wrong size)."""


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, ChannelKey, bytes]:
    """The next frame; IncompleteReadError when the stream ends, FrameError when it is malformed."""
    head = await reader.readexactly(_HEADER.size)
    length, kind, edge, src, dst = _HEADER.unpack(head)
    if length < 13:
        raise FrameError(f"a data frame announces {length} bytes, fewer than its 13-byte header")
    payload = await reader.readexactly(length - 13)
    return kind, (edge, src, dst), payload


def _credit_of(payload: bytes) -> int:
    """The number of batches a CREDIT frame returns."""
    if len(payload) != _CREDIT.size:
        raise FrameError(f"a credit frame carries {len(payload)} bytes instead of {_CREDIT.size}")
    return int(_CREDIT.unpack(payload)[0])


class DataServer:
    """Accepts producers' connections and delivers their frames to local input channels."""

    def __init__(self, codec: RecordCodec, token: str, attempt: int, on_error: Callable[[str], None]) -> None:
        self.codec = codec
        self.token = token
        self.attempt = attempt
        self.on_error = on_error
        self._channels: dict[ChannelKey, InputChannel] = {}
        self._early: dict[ChannelKey, list[Any]] = {}
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.closing = False

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        """Listens; returns the bound address."""
        self._server = await asyncio.start_server(self._serve, host, port)
        sock = self._server.sockets[0].getsockname()
        return sock[0], int(sock[1])

    def register(self, channel: InputChannel) -> None:
        """Makes a local input channel reachable; frames that arrived early are delivered now."""
        self._channels[channel.key] = channel
        for item in self._early.pop(channel.key, []):
            channel.push(item)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            kind, _, payload = await _read_frame(reader)
            hello = unpack(payload) if kind == HELLO else {}
            if hello.get("token") != self.token or hello.get("attempt") != self.attempt:
                log.warning("refused a data connection with a wrong token or attempt")
                writer.close()
                return
            while True:
                kind, key, payload = await _read_frame(reader)
                if kind == DATA:
                    self._deliver(key, self.codec.decode(payload), writer)
                elif kind == EVENT:
                    self._deliver(key, event_from_wire(unpack(payload)), writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self.closing:
                log.debug("a producer connection closed")
        except Exception as err:
            if not self.closing:
                self.on_error(f"data connection failed: {err}")

    def _deliver(self, key: ChannelKey, item: Any, writer: asyncio.StreamWriter) -> None:
        channel = self._channels.get(key)
        if channel is None:
            self._early.setdefault(key, []).append(item)
            return
        if channel.return_credit is None:
            channel.return_credit = _credit_writer(writer, key)
        channel.push(item)

    async def close(self) -> None:
        """Stops accepting and closes every connection."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()


def _credit_writer(writer: asyncio.StreamWriter, key: ChannelKey) -> Callable[[int], None]:
    def return_credit(n: int) -> None:
        if not writer.is_closing():
            writer.write(_frame(CREDIT, key, _CREDIT.pack(n)))

    return return_credit


class PeerConnection:
    """A producer's connection to one peer process, shared by all channels to that peer."""

    def __init__(self, address: tuple[str, int], codec: RecordCodec, hello: dict[str, Any],
                 on_error: Callable[[str], None]) -> None:
        self.address = address
        self.codec = codec
        self.hello = hello
        self.on_error = on_error
        self.writer: asyncio.StreamWriter | None = None
        self.channels: dict[ChannelKey, RemoteOutputChannel] = {}
        self.closing = False
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, timeout: float = 30.0) -> None:
        """Connects (retrying while the peer starts) and sends HELLO."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.address)
                break
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.writer = writer
        writer.write(_frame(HELLO, (0, 0, 0), pack(self.hello)))
        self._reader_task = asyncio.create_task(self._read_credits(reader))

    async def _read_credits(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, key, payload = await _read_frame(reader)
                if kind == CREDIT:
                    channel = self.channels.get(key)
                    if channel is not None:
                        channel.add_credit(_credit_of(payload))
        except (asyncio.IncompleteReadError, ConnectionError, FrameError) as err:
            if not self.closing:
                self.on_error(f"lost the data connection to {self.address[0]}:{self.address[1]} ({err})")

    def channel(self, key: ChannelKey) -> RemoteOutputChannel:
        """The output channel for ``key`` over this connection."""
        channel = RemoteOutputChannel(self, key)
        self.channels[key] = channel
        return channel

    def write(self, data: bytes) -> None:
        """Queues bytes on the socket (bounded by the channels' credits)."""
        assert self.writer is not None
        self.writer.write(data)

    async def close(self) -> None:
        """Closes the connection."""
        self.closing = True
        if self.writer is not None:
            self.writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()


class RemoteOutputChannel(OutputChannel):
    """A channel to a task in another process."""

    def __init__(self, connection: PeerConnection, key: ChannelKey) -> None:
        super().__init__()
        self.connection = connection
        self.key = key

    def _deliver(self, batch: list[Any]) -> None:
        self.connection.write(_frame(DATA, self.key, self.connection.codec.encode(batch)))

    def send_event(self, event: Barrier | EndOfStream) -> None:
        self.connection.write(_frame(EVENT, self.key, pack(event.to_wire())))
