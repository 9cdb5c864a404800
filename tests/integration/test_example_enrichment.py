"""``python examples/enrichment.py`` as written: it starts its HTTP service, runs locally, prints every order once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.enrichment import UNKNOWN, enriched_line, order, profile_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "enrichment.py"


def test_the_example_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "ENRICHMENT_COUNT": "300"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("order ")]
    assert sorted(lines) == sorted(
        enriched_line(i, u, a, profile_of(u) or UNKNOWN) for i, u, a in map(order, range(300))
    )
