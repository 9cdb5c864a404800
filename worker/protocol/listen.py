"""A listening TCP socket for a numeric host, made without the event loop's resolver.

``asyncio.start_server(handler, host, port)`` resolves even ``127.0.0.1`` through ``getaddrinfo`` on
the loop's thread pool: the pool's first use starts its threads, 2-30 ms on the way from a slot's
start to its registration. The control port (``jobmaster/control.py``) and a slot's data server
(``runtime/network.py``) listen on a socket from here instead when the host is an IP address.
"""

from __future__ import annotations

import ipaddress
import socket


def numeric_listener(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``host:port`` and listening, as ``start_server`` would bind it; None for a host name.

    Raises ``OSError`` as ``start_server`` does when the address cannot be bound.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(address), port))
        sock.listen(100)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
