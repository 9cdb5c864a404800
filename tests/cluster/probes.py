"""Container probes for the test bed's node agent: httpGet, tcpSocket and exec, with kubelet timing.

A :class:`ProbeRunner` tracks one probe of one container (initial delay, period, timeout, success
and failure thresholds) and runs its checks on a shared thread pool so that a slow endpoint never
stalls the agent's loop. The agent calls :meth:`ProbeRunner.tick` on every pass and reads
:attr:`ProbeRunner.healthy`.

Callers: ``tests/cluster/node_agent.py``.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Json = dict[str, Any]


def _port(probe_port: Any, container: Json) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(probe_port, int):
        return probe_port
    if str(probe_port).isdigit():
        return int(probe_port)
    for port in container.get("ports") or []:
        if port.get("name") == probe_port:
            return int(port["containerPort"])
    raise ValueError(f"unknown named port {probe_port!r}")


def check_once(probe: Json, container: Json, pod_ip: str, env: dict[str, str]) -> bool:
    """Runs one check of a probe; True when it succeeded."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            action = probe["httpGet"]
            host = action.get("host") or pod_ip
            port = _port(action.get("port"), container)
            conn_class = (
                http.client.HTTPSConnection
                if action.get("scheme", "HTTP").upper() == "HTTPS"
                else http.client.HTTPConnection
            )
            conn = conn_class(host, port, timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
                conn.request("GET", action.get("path", "/") or "/", headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= status < 400
        if "tcpSocket" in probe:
            action = probe["tcpSocket"]
            host = action.get("host") or pod_ip
            with socket.create_connection((host, _port(action.get("port"), container)), timeout=timeout):
                return True
        if "exec" in probe:
            command = probe["exec"].get("command") or []
            result = subprocess.run(command, env=env, timeout=timeout, capture_output=True, check=False)
            return result.returncode == 0
    except (OSError, ValueError, http.client.HTTPException, subprocess.TimeoutExpired):
        return False
    return True


class ProbeRunner:
    """The state of one probe (readiness or liveness) of one running container."""

    def __init__(
        self,
        probe: Json,
        container: Json,
        pod_ip: str,
        env: dict[str, str],
        pool: ThreadPoolExecutor,
        *,
        healthy_at_start: bool,
    ) -> None:
        self.probe = probe
        self.container = container
        self.pod_ip = pod_ip
        self.env = env
        self.pool = pool
        self.period = float(probe.get("periodSeconds", 10))
        self.success_threshold = int(probe.get("successThreshold", 1))
        self.failure_threshold = int(probe.get("failureThreshold", 3))
        self.next_at = time.monotonic() + float(probe.get("initialDelaySeconds", 0))
        self.healthy = healthy_at_start
        self.successes = 0
        self.failures = 0
        self.pending: Future[bool] | None = None

    def tick(self, now: float) -> bool:
        """Advances the probe; returns True when its verdict changed."""
        changed = False
        if self.pending is not None and self.pending.done():
            ok = self.pending.result()
            self.pending = None
            if ok:
                self.successes += 1
                self.failures = 0
                if not self.healthy and self.successes >= self.success_threshold:
                    self.healthy = changed = True
            else:
                self.failures += 1
                self.successes = 0
                if self.healthy and self.failures >= self.failure_threshold:
                    self.healthy = False
                    changed = True
        if self.pending is None and now >= self.next_at:
            self.next_at = now + self.period
            self.pending = self.pool.submit(check_once, self.probe, self.container, self.pod_ip, self.env)
        return changed
