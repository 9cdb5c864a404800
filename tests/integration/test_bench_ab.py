"""``python -m bench.ab --quick`` runs both sides end to end, each on its own code.

The base revision is HEAD here (the same code both sides), so nothing is compared but the set-up:
side A's JobMaster and slots must import ``streamjob.worker`` from the extracted base revision,
side B's from the working tree, and the results must name both sides' runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _ab(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.ab", "--quick", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ab_runs_the_base_revision_and_the_working_tree_alternately(tmp_path: Path) -> None:
    done = _ab(tmp_path, "--base", "HEAD", "--only", "keyed_p1,userfn_p1", "--rounds", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = tmp_path.glob("ab-*.json")
    results = json.loads(path.read_text())
    head = subprocess.run(
        ["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert results["sides"]["A"]["rev"] == head and results["rounds_done"] == 2
    assert Path(results["sides"]["B"]["worker_dir"]) == REPO / "worker"
    assert list(results["scenarios"]) == ["p1", "userfn_p1"]
    for name, scenario in results["scenarios"].items():
        assert scenario["errors"] == {"A": [], "B": []}, name
        for side in ("A", "B"):
            runs = scenario["runs"][side]
            assert [r["ab_round"] for r in runs] == [0, 1]
            assert all(r["verified"] is True for r in runs)  # quick runs check every output
            # the slots (where the sink runs) imported the side's own package root
            assert all(
                r["worker_packages"] and all(f"/{side}/streamjob/worker" in p for p in r["worker_packages"])
                for r in runs
            ), runs[0]["worker_packages"]
        for metric in ("events_per_s", "process_s"):
            assert scenario[metric]["diff_pct"] is not None and scenario[metric]["paired_diff_pct_median"] is not None
        # CPU per event needs a sink timeline longer than a smoke run may last: compared when both sides have it
        cpu = scenario["cpu_ns_per_event"]
        assert (cpu["diff_pct"] is not None) == bool(cpu["A"]["runs"] and cpu["B"]["runs"])
    # the order flips every pair: A first, then B first, …
    order = [line.split()[1] for line in done.stderr.splitlines() if " round " in line and "events/s" in line]
    assert order == ["A", "B", "B", "A", "A", "B", "B", "A"], order
    markdown = path.with_suffix(".md").read_text()
    assert "| p1 | events/s (first → last record) |" in markdown
    assert "| userfn_p1 | whole process s (start-up included) |" in markdown


def test_ab_refuses_an_unknown_revision_or_scenario(tmp_path: Path) -> None:
    bad_rev = _ab(tmp_path, "--base", "no-such-revision-xyz", "--only", "p1")
    assert bad_rev.returncode == 2 and "error: git rev-parse" in bad_rev.stderr
    bad_name = _ab(tmp_path, "--base", "HEAD", "--only", "cost")
    assert bad_name.returncode == 2 and "cost is not a job scenario" in bad_name.stderr
    assert not list(tmp_path.glob("ab-*"))
