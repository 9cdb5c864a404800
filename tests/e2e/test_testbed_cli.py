"""``python -m tests.cluster up|status|down``: the test bed by hand, as docs/testbed.md shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.fixtures import _kubectl_binary

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def bed(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.cluster", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_up_prints_how_to_use_it_and_down_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "bed"
    up = bed("up", "--dir", str(state), "--no-s3")
    if up.returncode != 0 and "cannot build the control plane" in up.stderr and os.environ.get("CI") != "true":
        pytest.skip(up.stderr)
    try:
        assert up.returncode == 0, up.stderr
        ready = json.loads((state / "ready.json").read_text())
        assert f"export KUBECONFIG={ready['kubeconfig']}" in up.stdout and "make testbed-down" in up.stdout
        pid = int((state / "serve.pid").read_text())

        def kubectl(*args: str) -> str:
            return subprocess.run(
                [_kubectl_binary(), "--kubeconfig", ready["kubeconfig"], *args],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout  # fmt: skip

        nodes = kubectl("get", "nodes", "--no-headers")
        assert "testbed-node" in nodes and " Ready" in nodes, nodes
        again = bed("up", "--dir", str(state), "--no-s3")
        assert again.returncode == 0 and "already up" in again.stdout
        assert bed("status", "--dir", str(state)).returncode == 0
    finally:
        down = bed("down", "--dir", str(state), timeout=150)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert bed("status", "--dir", str(state)).returncode == 1
