"""Building and running the test bed's binaries: the control plane (``testbed up``) and Helm.

:func:`build` runs ``tests/cluster/build.sh``, which compiles the Go programs once and caches them
outside the repo (``~/.cache/streamjob-testbed`` by default); :class:`ControlPlane` starts
``testbed up`` (etcd, kube-apiserver and kube-controller-manager as separate processes on
127.0.0.1), waits for its kubeconfig and stops it with SIGTERM.

Callers: ``tests/cluster/fixtures.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.podproc import die_with_parent

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BUILD_TIMEOUT = 45 * 60


class TestbedUnavailable(Exception):
    """The control plane or Helm could not be built or started; the message says why."""


def build(target: str, log_dir: Path) -> Path:
    """Builds (or finds in the cache) ``controlplane`` or ``helm``; returns the binary's path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"build-{target}.log"
    started = time.monotonic()
    try:
        with log_path.open("wb") as log:
            result = subprocess.run(
                ["bash", str(BUILD_SCRIPT), target],
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise TestbedUnavailable(f"building {target} failed: {err}; log {log_path}") from err
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise TestbedUnavailable(f"building {target} failed (exit {result.returncode}); log {log_path}:\n{tail}")
    binary = Path(result.stdout.decode().strip().splitlines()[-1])
    if not binary.is_file():
        raise TestbedUnavailable(f"build.sh {target} printed no binary path; log {log_path}")
    elapsed = time.monotonic() - started
    if elapsed > 5:
        with (log_dir / "build-times.txt").open("a") as times:
            times.write(f"{target} {elapsed:.0f}s {binary}\n")
    return binary


@dataclass(frozen=True)
class ControlPlaneState:
    """What ``testbed up`` reports once ready (its ``state.json``)."""

    server: str
    kubeconfig: Path
    token: str
    logs: Path


class ControlPlane:
    """One ``testbed up`` process and its state directory (certificates, etcd data, logs)."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.log_path = root / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240.0) -> ControlPlaneState:
        self.root.mkdir(parents=True, exist_ok=True)
        state_file = self.root / "state.json"
        state_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "up", "--dir", str(self.root), "--timeout", f"{int(timeout)}s"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        deadline = time.monotonic() + timeout + 10
        while time.monotonic() < deadline:
            if state_file.exists():
                data = json.loads(state_file.read_text())
                return ControlPlaneState(
                    server=data["server"],
                    kubeconfig=Path(data["kubeconfig"]),
                    token=data["token"],
                    logs=Path(data["logs"]),
                )
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise TestbedUnavailable(
                    f"testbed up exited with {self.proc.returncode}; logs in {self.root / 'logs'}:\n{tail}"
                )
            time.sleep(0.2)
        self.stop()
        raise TestbedUnavailable(f"the control plane was not ready after {timeout}s; logs in {self.root}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to ``testbed up`` (which stops its components in order), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
