"""The internal planes' handshake (``protocol.handshake``) and the data server built on it (``runtime.network``),
over real loopback sockets in this process: only holders of the job's secret, for this attempt, get in,
and nothing a stranger sends fails the attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest

from streamjob.worker.protocol.auth import new_job_secret, prove
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.protocol.framing import HEADER, NO_CHANNEL, FrameKind, Limits, frame, read_frame
from streamjob.worker.protocol.handshake import (
    CONTROL_LABEL,
    HandshakeError,
    HandshakeGate,
    accept,
    connect,
    data_label,
)
from streamjob.worker.protocol.messages import CHALLENGE, PROTOCOL_VERSION, Hello, ProtocolError, decode, encode
from streamjob.worker.runtime.channels import InputGate
from streamjob.worker.runtime.codec import RecordCodec
from streamjob.worker.runtime.network import DataServer, PeerConnection

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

SECRET = new_job_secret()
FAST = Limits(handshake_timeout_s=0.5, pending_handshakes=4)


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro(), 20))


async def serve_once(
    secret: str, label: str = CONTROL_LABEL, limits: Limits = FAST
) -> tuple[asyncio.Server, int, asyncio.Future[Any]]:
    """A server that runs ``accept`` on its first connection; the future gets the Hello or the error."""
    result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result.set_result(await accept(reader, writer, secret, lambda _h: label, limits))
        except ProtocolError as err:
            result.set_result(err)
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], result


def test_both_sides_prove_the_secret() -> None:
    async def go() -> None:
        server, port, result = await serve_once(SECRET)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await connect(reader, writer, SECRET, CONTROL_LABEL)
        assert isinstance(await result, Hello)
        writer.close()
        server.close()

    run(go)


def test_a_client_without_the_secret_is_refused_and_learns_nothing_but_a_nonce() -> None:
    async def go() -> None:
        server, port, result = await serve_once(SECRET)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError, match="refused the handshake"):
            await connect(reader, writer, new_job_secret(), CONTROL_LABEL)
        assert "wrong proof" in str(await result)
        server.close()

    run(go)


def test_a_proof_for_another_plane_or_attempt_is_worthless() -> None:
    async def go() -> None:
        for server_label, client_label in (
            (CONTROL_LABEL, data_label(0, "t")),
            (data_label(1, "t"), data_label(2, "t")),
            (data_label(1, "t"), data_label(1, "u")),
        ):
            server, port, result = await serve_once(SECRET, server_label)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(HandshakeError):
                await connect(reader, writer, SECRET, client_label)
            assert "wrong proof" in str(await result)
            server.close()

    run(go)


def test_the_client_refuses_a_server_without_the_secret() -> None:
    async def go() -> None:
        server, port, _ = await serve_once(new_job_secret())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError):  # the impostor cannot even verify the client; were it to answer,
            await connect(reader, writer, SECRET, CONTROL_LABEL)  # its Welcome would not verify either
        server.close()

        async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(
                frame(
                    FrameKind.MESSAGE,
                    NO_CHANNEL,
                    msgpack.packb({"t": "challenge", "version": PROTOCOL_VERSION, "nonce": b"n" * 32}),
                )
            )
            await read_frame(reader, 4096)
            writer.write(frame(FrameKind.MESSAGE, NO_CHANNEL, msgpack.packb({"t": "welcome", "proof": b"x" * 32})))
            await writer.drain()

        fake = await asyncio.start_server(impostor, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.sockets[0].getsockname()[1])
        with pytest.raises(HandshakeError, match="server's proof is wrong"):
            await connect(reader, writer, SECRET, CONTROL_LABEL)
        fake.close()

    run(go)


@pytest.mark.parametrize(
    "first",
    [
        b"",  # silence
        HEADER.pack(0xFFFFFFFF, FrameKind.MESSAGE, 0, 0, 0),  # a 4 GiB announcement
        HEADER.pack(0, 0, 0, 0, 0),  # length 0
        frame(FrameKind.MESSAGE, NO_CHANNEL, msgpack.packb([1, 2, 3])),  # not a map
        frame(
            FrameKind.MESSAGE, NO_CHANNEL, msgpack.packb({"t": "register", "data_host": "h", "data_port": 1, "pid": 1})
        ),  # a registration without a handshake
        frame(FrameKind.DATA, (1, 0, 0), b"records"),
        b"GET /internal/control HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    ],
)
def test_a_stranger_gets_a_challenge_then_is_dropped(first: bytes) -> None:
    async def go() -> None:
        server, port, result = await serve_once(SECRET)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first)
        kind, _, payload = await read_frame(reader, 4096)
        assert kind == FrameKind.MESSAGE and len(decode(payload, CHALLENGE).nonce) == 32
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing more said
        error = await result
        assert isinstance(error, ProtocolError) and "\n" not in str(error)
        server.close()

    run(go)


def test_a_hello_with_a_short_nonce_is_refused() -> None:
    async def go() -> None:
        server, port, result = await serve_once(SECRET)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        _, _, payload = await read_frame(reader, 4096)
        challenge = decode(payload, CHALLENGE)
        writer.write(
            frame(
                FrameKind.MESSAGE,
                NO_CHANNEL,
                encode(Hello(version=PROTOCOL_VERSION, nonce=b"", proof=prove(SECRET, CONTROL_LABEL, challenge.nonce))),
            )
        )
        assert "nonce" in str(await result)
        server.close()

    run(go)


def test_the_gate_caps_pending_handshakes() -> None:
    gate = HandshakeGate(2, "test")
    assert gate.admit("a") and gate.admit("b") and not gate.admit("c")
    gate.release()
    assert gate.admit("d") and gate.refused == 1


def data_server(errors: list[str]) -> DataServer:
    server = DataServer(RecordCodec(), SECRET, errors.append, limits=FAST)
    server.attempt, server.token = 3, "tok"
    return server


def test_the_data_plane_carries_batches_events_and_credits_after_the_handshake() -> None:
    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        host, port = await server.start("127.0.0.1")
        gate = InputGate()
        channel = gate.add_channel((0, 1, 0))
        server.register(channel)
        peer = PeerConnection(
            (host, port), RecordCodec(), errors.append, secret=SECRET, attempt=3, token="tok", max_frame=1 << 20
        )
        await peer.connect()
        out = peer.channel((0, 1, 0))
        await out.send_batch([1, "two", (3.0,)])
        out.send_event(Barrier(9, 5))
        assert await gate.next(5) == (channel, [1, "two", (3.0,)])
        assert (await gate.next(5))[1] == Barrier(9, 5)  # type: ignore[index]
        for _ in range(100):
            if out.credits == 8:
                break
            await asyncio.sleep(0.01)
        assert out.credits == 8 and errors == []
        await peer.close()
        await server.close()

    run(go)


def test_a_producer_of_another_attempt_or_without_the_secret_cannot_connect() -> None:
    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        host, port = await server.start("127.0.0.1")
        for secret, attempt, token in ((SECRET, 2, "tok"), (SECRET, 3, "other"), (new_job_secret(), 3, "tok")):
            peer = PeerConnection(
                (host, port),
                RecordCodec(),
                errors.append,
                secret=secret,
                attempt=attempt,
                token=token,
                max_frame=1 << 20,
            )
            with pytest.raises(ConnectionError, match="refused the handshake"):
                await peer.connect(timeout=2)
        assert errors == []  # refusals never fail the attempt
        await server.close()

    run(go)


def test_a_reset_data_server_drops_the_failed_attempts_producers_and_refuses_them_after() -> None:
    """A released slot stays up for the next attempt: a process still running the old one cannot reach it."""

    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        host, port = await server.start("127.0.0.1")
        gate = InputGate()
        server.register(gate.add_channel((0, 1, 0)))
        old = PeerConnection(
            (host, port), RecordCodec(), [].append, secret=SECRET, attempt=3, token="tok", max_frame=1 << 20
        )
        await old.connect()
        server.reset()
        assert old._reader_task is not None
        await asyncio.wait_for(asyncio.shield(old._reader_task), 5)  # its connection was closed
        server.attempt, server.token = 4, "new"  # the next deployment
        for attempt, token in ((3, "tok"), (4, "tok"), (3, "new")):
            stale = PeerConnection(
                (host, port),
                RecordCodec(),
                errors.append,
                secret=SECRET,
                attempt=attempt,
                token=token,
                max_frame=1 << 20,
            )
            with pytest.raises(ConnectionError, match="refused the handshake"):
                await stale.connect(timeout=2)
        fresh = PeerConnection(
            (host, port), RecordCodec(), errors.append, secret=SECRET, attempt=4, token="new", max_frame=1 << 20
        )
        await fresh.connect()
        await fresh.channel((0, 1, 0)).send_batch(["after"])
        gate = InputGate()
        channel = gate.add_channel((0, 1, 0))
        server.register(channel)  # the old attempt's channel is gone: the batch waited for the new one
        assert await gate.next(5) == (channel, ["after"])
        assert errors == []
        await fresh.close()
        await server.close()

    run(go)


def test_junk_after_the_handshake_drops_the_connection_without_failing_the_attempt() -> None:
    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        server.max_frame = 1024
        host, port = await server.start("127.0.0.1")
        for junk in (
            HEADER.pack(0xFFFFFFFF, FrameKind.DATA, 0, 0, 0),
            frame(FrameKind.EVENT, (0, 0, 0), b"\xc1"),
            frame(FrameKind.CREDIT, (0, 0, 0), b"\0\0\0\1"),
        ):
            reader, writer = await asyncio.open_connection(host, port)
            await connect(reader, writer, SECRET, data_label(3, "tok"), attempt=3, token="tok")
            writer.write(junk)
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert errors == []
        await server.close()

    run(go)


def test_a_batch_the_codec_refuses_fails_the_attempt_with_the_reason() -> None:
    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        host, port = await server.start("127.0.0.1")
        reader, writer = await asyncio.open_connection(host, port)
        await connect(reader, writer, SECRET, data_label(3, "tok"), attempt=3, token="tok")
        writer.write(frame(FrameKind.DATA, (0, 0, 0), b"not a pickle"))
        for _ in range(200):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert errors and "record batch" in errors[0]
        await server.close()

    run(go)


def test_a_batch_over_the_frame_limit_fails_its_sender_with_the_fix() -> None:
    async def go() -> None:
        errors: list[str] = []
        server = data_server(errors)
        host, port = await server.start("127.0.0.1")
        peer = PeerConnection(
            (host, port), RecordCodec(), errors.append, secret=SECRET, attempt=3, token="tok", max_frame=1000
        )
        await peer.connect()
        with pytest.raises(Exception, match="max_frame_bytes"):
            await peer.channel((0, 0, 0)).send_batch(["x" * 2000])
        await peer.close()
        await server.close()

    run(go)


def test_idle_strangers_are_capped_and_closed_after_the_deadline() -> None:
    async def go() -> None:
        server = data_server([])
        host, port = await server.start("127.0.0.1")
        conns = [await asyncio.open_connection(host, port) for _ in range(12)]
        started = asyncio.get_running_loop().time()
        challenged = 0
        for reader, _ in conns:
            data = await asyncio.wait_for(reader.read(), 5)  # until the server closes it
            challenged += bool(data)
        assert challenged == FAST.pending_handshakes  # the rest were refused at once
        assert asyncio.get_running_loop().time() - started < 3
        assert server.gate.pending == 0
        await server.close()

    run(go)
