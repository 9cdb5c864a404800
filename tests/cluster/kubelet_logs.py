"""The node agent's kubelet log endpoint, so that ``kubectl logs`` works on the test bed.

``kubectl logs POD`` asks the API server, which fetches ``GET /containerLogs/<ns>/<pod>/<container>``
from the node's kubelet at the node's address and ``status.daemonEndpoints.kubeletEndpoint.Port``
over HTTPS. The bed's API server has no ``--kubelet-certificate-authority``, so it does not verify the
kubelet's certificate (upstream's default): a self-signed one made with ``openssl`` at start-up does.
Query parameters honoured: ``tailLines`` and ``limitBytes`` (``follow`` returns what is there).

Started by ``NodeAgent.start`` when ``openssl`` is on the PATH (else the port stays 0 and ``kubectl
logs`` fails as before); serves the log files ``NodeAgent.log_path`` names.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

log = logging.getLogger("streamjob.testbed.node_agent")

#: ``(namespace, pod, container)`` → the container's log file (KeyError when unknown).
LogLookup = Callable[[str, str, str], Path]


def self_signed(directory: Path) -> tuple[Path, Path] | None:
    """A certificate and key for 127.0.0.1 (``openssl req -x509``), or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    if not cert.exists():
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "7", "-subj", "/CN=testbed-node", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last ``lines`` lines of ``data``, then at most ``limit`` bytes (as the kubelet applies them)."""
    if lines is not None:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:]) if lines > 0 else b""
    if limit is not None and limit >= 0:
        data = data[:limit]
    return data


class KubeletLogServer:
    """A threaded HTTPS server answering ``/containerLogs/...`` from the agent's log files."""

    def __init__(self, lookup: LogLookup, cert_dir: Path) -> None:
        self.lookup = lookup
        self.cert_dir = cert_dir
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> int:
        """Serves on 127.0.0.1 at a free port; returns it (0 when openssl is missing)."""
        pair = self_signed(self.cert_dir)
        if pair is None:
            log.warning("no openssl: the kubelet log endpoint is off (kubectl logs will not work)")
            return 0
        lookup = self.lookup

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p]
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container>")
                    return
                query = parse_qs(url.query)
                try:
                    path = lookup(parts[1], parts[2], parts[3])
                    data = path.read_bytes() if path.exists() else b""
                    lines = int(query["tailLines"][0]) if "tailLines" in query else None
                    limit = int(query["limitBytes"][0]) if "limitBytes" in query else None
                except KeyError as err:
                    self.send_error(404, str(err))
                    return
                except ValueError as err:
                    self.send_error(400, str(err))
                    return
                body = tail(data, lines, limit)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.info("kubelet logs: " + format, *args)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pair[0]), str(pair[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="testbed-kubelet-logs", daemon=True).start()
        return self.port

    def stop(self) -> None:
        """Stops serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
