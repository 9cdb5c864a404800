"""Listening sockets made without the event loop's resolver: the control and data ports, and the REST port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.jobmaster.rest_socket import bind_rest_socket
from streamjob.worker.protocol.listen import numeric_listener

pytestmark = pytest.mark.unit


def test_an_ip_address_gets_a_listening_socket_on_a_free_port() -> None:
    sock = numeric_listener("127.0.0.1", 0)
    assert sock is not None
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted into the backlog: it listens
    finally:
        sock.close()


@pytest.mark.parametrize("host", ["localhost", "", "jobmaster.default.svc"])
def test_a_host_name_is_left_to_the_event_loop(host: str) -> None:
    assert numeric_listener(host, 0) is None


def test_a_taken_port_raises_as_start_server_would() -> None:
    taken = numeric_listener("127.0.0.1", 0)
    assert taken is not None
    try:
        with pytest.raises(OSError):
            numeric_listener("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_an_asyncio_server_serves_on_it() -> None:
    async def main() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        sock = numeric_listener("127.0.0.1", 0)
        server = await asyncio.start_server(echo, sock=sock)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"hello\n")
        line = await reader.readline()
        writer.close()
        server.close()
        return line

    assert asyncio.run(main()) == b"hello\n"


def test_a_taken_rest_port_is_one_line_naming_the_flag() -> None:
    taken = bind_rest_socket("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"cannot serve the REST API on 127\.0\.0\.1:\d+ .*pass --rest-port 0"):
            bind_rest_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_an_unknown_rest_host_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"cannot serve the REST API on no-such-host\.invalid:0"):
        bind_rest_socket("no-such-host.invalid", 0)


def test_an_ip_rest_address_is_bound_without_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver's first call costs ~5 ms of ``streamjob run``'s start, even for ``127.0.0.1``."""

    def no_resolver(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"getaddrinfo{args} called")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    sock = bind_rest_socket("127.0.0.1", 0)
    try:
        with socket.socket() as client:  # listening: the connection is queued
            client.settimeout(5)
            client.connect(sock.getsockname())
    finally:
        sock.close()
    with pytest.raises(AssertionError, match="getaddrinfo"):
        bind_rest_socket("localhost", 0)  # a name still goes through the resolver
