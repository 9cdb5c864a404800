"""The data plane between slot processes: authenticated, framed TCP connections carrying channels.

Each slot process runs one ``DataServer``. A producer opens one connection per peer process and
multiplexes all its channels to that peer over it; the consumer writes credits back on the same
connection. Frames and their limits are declared in ``protocol.framing``; a connection starts with
the handshake of ``protocol.handshake`` under the attempt's label, so strangers, and processes of an
earlier attempt, are refused before they can send a record. Bytes that are not valid frames or
events drop the connection with one log line and never fail the attempt; a batch the job's codec
refuses to decode (a class it does not allow) does fail it, with the reason. Per batch this costs
one header check, nothing per record. Used by ``slot`` (setup) and ``task`` (channels).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from streamjob.worker.errors import SerializationError
from streamjob.worker.protocol.auth import tokens_equal
from streamjob.worker.protocol.events import StreamEvent
from streamjob.worker.protocol.framing import FrameKind, Limits, credit_frame, frame, parse_credit, read_frame
from streamjob.worker.protocol.handshake import HandshakeError, HandshakeGate, accept, connect, data_label, peer_name
from streamjob.worker.protocol.listen import numeric_listener
from streamjob.worker.protocol.messages import Hello, ProtocolError, decode_event, encode_event
from streamjob.worker.runtime.channels import ChannelKey, InputChannel, OutputChannel
from streamjob.worker.runtime.codec import RecordCodec

log = logging.getLogger(__name__)

_DATA, _EVENT, _CREDIT = FrameKind.DATA, FrameKind.EVENT, FrameKind.CREDIT


class DataServer:
    """Accepts producers' connections and delivers their frames to local input channels.

    Until a deployment sets ``attempt`` and ``token`` it refuses every producer.
    """

    def __init__(
        self,
        codec: RecordCodec,
        secret: str,
        on_error: Callable[[str], None],
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: a server context to require mutual TLS from producers (``protocol/tls.py``)."""
        self.codec = codec
        self.tls = tls
        self.secret = secret
        self.token = ""
        self.attempt = -1
        self.on_error = on_error
        self.limits = limits or Limits()
        self.max_frame = self.limits.data_frame_bytes
        self.gate = HandshakeGate(self.limits.pending_handshakes, "data")
        self._channels: dict[ChannelKey, InputChannel] = {}
        self._early: dict[ChannelKey, list[Any]] = {}
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.closing = False
        self.generation = 0
        """Counts ``reset``: a connection of an earlier attempt never reports an error into a later one."""

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        """Listens; returns the bound address."""
        listener = numeric_listener(host, port)  # no resolver thread for an IP address
        self._server = await asyncio.start_server(
            self._serve,
            None if listener else host,
            None if listener else port,
            sock=listener,
            ssl=self.tls,
            ssl_handshake_timeout=self.limits.handshake_timeout_s if self.tls else None,
        )
        sock = self._server.sockets[0].getsockname()
        return sock[0], int(sock[1])

    def register(self, channel: InputChannel) -> None:
        """Makes a local input channel reachable; frames that arrived early are delivered now."""
        self._channels[channel.key] = channel
        for item in self._early.pop(channel.key, []):
            channel.push(item)

    def reset(self) -> None:
        """Ends an attempt here (the slot stays for the next): its producers' connections close, its channels go.

        Until the next deployment sets ``attempt`` and ``token`` again every producer is refused, so a
        process still running the old attempt cannot reach the new one's channels.
        """
        self.generation += 1
        for w in self._writers:
            w.transport.abort()
        self._writers = []
        self._channels = {}
        self._early = {}
        self.token, self.attempt = "", -1
        self.closing = False

    def _admit(self, hello: Hello) -> None:
        """A producer that knows the secret, but of another attempt (a process the JobMaster gave up on)."""
        if hello.attempt != self.attempt:
            raise HandshakeError(f"a producer of attempt {hello.attempt}; this slot runs attempt {self.attempt}")
        if not tokens_equal(hello.token, self.token):
            raise HandshakeError(f"a producer with another token for attempt {self.attempt}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer)
        if not self.gate.admit(peer):
            writer.transport.abort()
            return
        try:
            await accept(reader, writer, self.secret, _label, self.limits, self._admit)
        except ProtocolError as err:
            log.warning("refused a data connection from %s: %s", peer, err)
            writer.transport.abort()
            return
        finally:
            self.gate.release()
        self._writers.append(writer)
        generation = self.generation
        try:
            await self._receive(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self.closing:
                log.debug("a producer connection closed")
        except ProtocolError as err:
            log.warning("dropped the data connection from %s: %s", peer, err)
            writer.transport.abort()
        except SerializationError as err:  # the job's records: the job must learn why (a type it did not allow)
            if not self.closing and generation == self.generation:
                self.on_error(f"data connection from {peer} failed: {err}")

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = self.codec
        while True:
            kind, key, payload = await read_frame(reader, self.max_frame)
            if kind == _DATA:
                try:
                    batch = codec.decode(payload)
                except SerializationError:
                    raise
                except Exception as err:  # the bytes of the job's records, not a frame: the codec's problem
                    raise SerializationError(f"a record batch cannot be decoded ({type(err).__name__}: {err})") from err
                self._deliver(key, batch, writer)
            elif kind == _EVENT:
                self._deliver(key, decode_event(payload), writer)
            else:
                raise ProtocolError(f"a producer sent a frame of kind {kind}")

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


def _label(hello: Hello) -> str:
    return data_label(hello.attempt, hello.token)


def _credit_writer(writer: asyncio.StreamWriter, key: ChannelKey) -> Callable[[int], None]:
    def return_credit(n: int) -> None:
        if not writer.is_closing():
            writer.write(credit_frame(key, n))

    return return_credit


class PeerConnection:
    """A producer's connection to one peer process, shared by all channels to that peer."""

    def __init__(
        self,
        address: tuple[str, int],
        codec: RecordCodec,
        on_error: Callable[[str], None],
        *,
        secret: str,
        attempt: int,
        token: str,
        max_frame: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.codec = codec
        self.on_error = on_error
        self.secret = secret
        self.attempt = attempt
        self.token = token
        self.max_frame = max_frame
        self.writer: asyncio.StreamWriter | None = None
        self.channels: dict[ChannelKey, RemoteOutputChannel] = {}
        self.closing = False
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, timeout: float = 30.0) -> None:
        """Connects and authenticates (retrying while the peer starts or is busy with strangers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        label = data_label(self.attempt, self.token)
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await asyncio.open_connection(*self.address, ssl=self.tls)
                await connect(
                    reader,
                    writer,
                    self.secret,
                    label,
                    attempt=self.attempt,
                    token=self.token,
                    timeout_s=max(1.0, deadline - loop.time()),
                )
                break
            except (OSError, HandshakeError) as err:
                if writer is not None:
                    writer.close()
                refused_tls = isinstance(err, ssl.SSLCertVerificationError)  # a wrong CA does not mend itself
                retry = (isinstance(err, OSError) and not refused_tls) or (
                    isinstance(err, HandshakeError) and err.before_challenge
                )
                if not retry or loop.time() > deadline:
                    raise ConnectionError(
                        f"cannot open the data connection to {self.address[0]}:{self.address[1]}: {err}"
                    ) from None
                await asyncio.sleep(0.05)
        self.writer = writer
        self._reader_task = asyncio.create_task(self._read_credits(reader))

    async def _read_credits(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, key, payload = await read_frame(reader, 64)
                if kind != _CREDIT:
                    raise ProtocolError(f"a consumer sent a frame of kind {kind}")
                channel = self.channels.get(key)
                if channel is not None:
                    channel.add_credit(parse_credit(payload))
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError) as err:
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
        connection = self.connection
        payload = connection.codec.encode(batch)
        if len(payload) > connection.max_frame:
            raise SerializationError(
                f"a batch of {len(batch)} records encodes to {len(payload)} bytes, more than the data plane's "
                f"frame limit of {connection.max_frame} bytes; raise max_frame_bytes in the job config or make "
                "the records or the batch size (env.set_buffer_size) smaller"
            )
        connection.write(frame(_DATA, self.key, payload))

    def send_event(self, event: StreamEvent) -> None:
        self.connection.write(frame(_EVENT, self.key, encode_event(event)))
