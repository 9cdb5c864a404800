"""TCP forwarders from the host's pod-facing address to servers that listen on 127.0.0.1.

The bed's API server and the SeaweedFS server bind 127.0.0.1, which pods on a bridge cannot reach.
A :class:`Forwarder` listens on the cluster's host address (see ``tests/containers/cluster.py``) and
pipes each connection to the loopback server unchanged (TLS passes through: clients still verify the
API server's certificate, which names the ``kubernetes`` Service's cluster IP).

Callers: ``tests/containers/cluster.py``.
"""

from __future__ import annotations

import socket
import threading


class Forwarder:
    """Accepts on ``(host, port)`` and pipes every connection to ``(target_host, target_port)``."""

    def __init__(self, host: str, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.host = host
        self.port = int(self.listener.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
        back.start()
        _pipe(upstream, client)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copies until EOF or an error on either side, then half-closes ``sink`` (or closes both)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass
