"""Stopping the test servers' process groups (SeaweedFS, Kafka): shared by their fixtures."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server's process group, as a crash would (fault injection)."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stop_group(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM a server's process group, then SIGKILL after ``grace_s``."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
