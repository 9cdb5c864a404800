"""The JobMaster's control port (``jobmaster/control.py``) over loopback, with a fake JobMaster: only a client
that proves the secret registers, and a message that does not parse is one log line, not a lost slot."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgpack
import pytest

from streamjob.worker.jobmaster.control import ControlServer
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.protocol.auth import new_job_secret
from streamjob.worker.protocol.framing import NO_CHANNEL, FrameKind, frame, read_frame
from streamjob.worker.protocol.handshake import CONTROL_LABEL, HandshakeError, connect
from streamjob.worker.protocol.messages import TO_SLOT, Prepared, Register, Start, decode, encode

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

SECRET = new_job_secret()


class FakeConfig:
    worker_register_timeout_ms = 5000


class FakeJobMaster:
    """What ``ControlServer`` uses of a JobMaster: the registry and the two callbacks."""

    def __init__(self) -> None:
        self.config = FakeConfig()
        self.registry = SlotRegistry()
        self.messages: list[Any] = []
        self.lost: list[int] = []

    def on_slot_message(self, conn: SlotConnection, message: Any) -> None:
        self.messages.append((conn.index, message))

    def on_slot_lost(self, conn: SlotConnection) -> None:
        self.lost.append(conn.index)


async def until(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def send(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(frame(FrameKind.MESSAGE, NO_CHANNEL, payload))


def test_a_slot_with_the_secret_registers_and_a_bad_message_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        jm = FakeJobMaster()
        jm.registry.open_for(1)
        server = ControlServer(jm, SECRET)  # type: ignore[arg-type]
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await connect(reader, writer, SECRET, CONTROL_LABEL)
        send(writer, encode(Register(data_host="127.0.0.1", data_port=4000, pid=7)))
        await until(lambda: 0 in jm.registry.slots)
        assert jm.registry.slots[0].data_address == ("127.0.0.1", 4000)
        with caplog.at_level(logging.WARNING):
            send(writer, msgpack.packb([1, 2]))
            send(writer, msgpack.packb({"t": "deployed", "tasks": 1}))
            send(writer, encode(Prepared(tasks=2)))
            await until(lambda: jm.messages)
        assert jm.messages == [(0, Prepared(tasks=2))] and jm.lost == []
        lines = [r for r in caplog.records if "ignored a control message" in r.getMessage()]
        assert len(lines) == 2 and all(r.exc_info is None and "127.0.0.1:" in r.getMessage() for r in lines)
        jm.registry.slots[0].send(Start())
        kind, _, payload = await read_frame(reader, 1 << 20)
        assert kind == FrameKind.MESSAGE and decode(payload, TO_SLOT) == Start()
        writer.close()
        await until(lambda: jm.lost == [0])
        await server.close()

    asyncio.run(go())


def test_a_client_without_the_secret_never_registers() -> None:
    async def go() -> None:
        jm = FakeJobMaster()
        jm.registry.open_for(1)
        server = ControlServer(jm, SECRET)  # type: ignore[arg-type]
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(HandshakeError):
            await connect(reader, writer, new_job_secret(), CONTROL_LABEL)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await read_frame(reader, 4096)  # the challenge
        send(writer, encode(Register(data_host="127.0.0.1", data_port=4000, pid=7)))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert jm.registry.slots == {} and jm.messages == [] and server.gate.pending == 0
        await server.close()

    asyncio.run(go())


def test_a_taken_control_port_is_one_config_error() -> None:
    async def go() -> None:
        first = ControlServer(FakeJobMaster(), SECRET)  # type: ignore[arg-type]
        port = await first.start("127.0.0.1", 0)
        with pytest.raises(Exception, match=f"cannot open the control port 127.0.0.1:{port}.*--control-port 0"):
            await ControlServer(FakeJobMaster(), SECRET).start("127.0.0.1", port)  # type: ignore[arg-type]
        await first.close()

    asyncio.run(go())
