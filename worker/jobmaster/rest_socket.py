"""The REST API's listening socket, bound before its server exists (``local._run``).

``streamjob run`` binds and listens on its REST port at once, so a taken port fails the run before
anything starts and the address can be printed, but attaches the HTTP server (aiohttp, ~0.1 s of
imports) only once a client connects (``local._serve_rest``): that first connection waits in the
socket's backlog meanwhile instead of being refused. ``rest.serve`` takes the socket.
"""

from __future__ import annotations

import socket

from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol.listen import numeric_listener


def bind_rest_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port); ``ConfigError`` naming the fix when it cannot.

    An IP address is bound as it is (``numeric_listener``): the resolver's first call costs ~5 ms of
    the start, even for a numeric host.
    """
    try:
        sock = numeric_listener(host, port)
    except OSError as err:
        raise _taken(host, port, err) from err
    if sock is not None:
        return sock
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise ConfigError(
            f"cannot serve the REST API on {host}:{port} ({err.strerror}); use an address of this host"
        ) from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise _taken(host, port, err) from err
    return sock


def _taken(host: str, port: int, err: OSError) -> ConfigError:
    return ConfigError(
        f"cannot serve the REST API on {host}:{port} ({err.strerror}); pass --rest-port 0 "
        "for a free port or another port number"
    )
