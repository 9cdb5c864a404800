"""``python -m bench --quick`` runs every scenario end to end and writes well-formed results.

Benchmarks are not tests: nothing here checks a timing or a target, only that the suite runs on
real processes, that the benchmark job's outputs are right (quick runs verify every running sum),
and that ``latest.json`` / ``latest.md`` have the shape readers rely on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERFN = (
    "userfn_p1",
    "userfn_p1_cp1s",
    "userfn_p2",
    "userfn_p2_cp1s",
    "userfn_p1_ssg",
    "userfn_p2_ssg",
    "userfn_p1_long",
    "userfn_p2_long",
)
JOB_SCENARIOS = (
    "p1",
    "p1_cp1s",
    "p2",
    "p2_cp1s",
    "p1_long",
    "p1_long_cp1s",
    "p2_long",
    "p2_long_cp1s",
    "checkpoints",
    "backpressure",
    *USERFN,
)


def _run_quick(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,  # every scenario, the failover one on the e2e test bed included
        check=False,
    )


def _check_run(run: dict[str, Any], records: int) -> None:
    assert run["records"] == records
    assert run["verified"] is True  # quick runs check every running sum the job emitted
    assert run["events_per_s"] > 0 and run["wall_s"] > 0 and run["startup_s"] > 0
    assert run["process_s"] > run["startup_s"]
    assert [Path(p).resolve() for p in run["worker_packages"]] == [REPO / "worker"]  # the slots ran this tree
    assert isinstance(run["checkpoints"], list)
    assert all({"id", "duration_ms", "final"} <= set(cp) for cp in run["checkpoints"])
    assert run["max_slot_peak_rss_mb"] > 0
    assert run["slot_peak_rss_mb"]
    assert isinstance(run["rss_samples"], list)


def test_quick_suite_writes_well_formed_results(tmp_path: Path) -> None:
    done = _run_quick(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["schema"] == 1 and results["quick"] is True
    assert results["environment"]["cpus"] >= 1
    assert set(JOB_SCENARIOS) | {"stages", "userfn_ref"} <= set(results["scenarios"])
    for name in JOB_SCENARIOS:
        scenario = results["scenarios"][name]
        assert scenario["errors"] == [], (name, scenario["errors"])
        assert len(scenario["runs"]) == 1
        _check_run(scenario["runs"][0], scenario["spec"]["records"])
        summary = scenario["summary"]
        assert summary["events_per_s"]["median"] > 0
    assert results["scenarios"]["checkpoints"]["summary"]["checkpoint_count"] >= 1
    for name in USERFN:
        assert results["scenarios"][name]["spec"]["job"] == "user_fn"
    assert results["scenarios"]["userfn_p1_cp1s"]["summary"]["checkpoint_count"] >= 1
    ref = results["scenarios"]["userfn_ref"]
    assert ref["errors"] == [] and ref["runs"][0]["verified"] is True and ref["summary"]["events_per_s"] > 0
    assert ref["parallel_runs"][0]["processes"] == 2 and ref["summary"]["two_processes_events_per_s"] > 0
    memory = results["scenarios"]["backpressure"]["summary"]["memory"]
    assert isinstance(memory["bounded"], bool)
    stages = results["scenarios"]["stages"]
    assert stages["errors"] == [], stages["errors"]
    names = {row["name"] for row in stages["stages"]}
    assert names >= {"source", "partition_p2", "encode", "reduce_sum", "userfn_chain"}
    cost = results["scenarios"]["cost"]
    assert cost["errors"] == [], cost["errors"]
    assert set(cost["by_parallelism"]) == {"p1", "p2"}
    for run in cost["by_parallelism"].values():
        kinds = [w["kind"] for w in run["windows"]]
        assert kinds == ["off", "on", "off", "on", "off"]
        assert all(w["figures"] and w["figures"]["events_per_s"] > 0 for w in run["windows"])
        assert run["checkpoints_triggered"] == 4 and run["checkpoints_completed"] == 4
        assert len(run["costs"]["wall"]["windows"]) == len(run["costs"]["cpu"]["windows"]) == 2
        assert 0 < run["direct_cost_pct"] < 100 and run["checkpoint_cpu_ms_p50"] > 0
    derived = results["derived"]
    assert set(derived["checkpoint_cost_windows_pct"]) == {"p1", "p2"}
    assert set(derived["checkpoint_cost_pct"]) == {"p1", "p2"}
    assert {"p1_events_per_s", "p2_events_per_s", "checkpoint_cost", "checkpoint_p50"} <= set(derived["targets"])
    markdown = (tmp_path / "latest.md").read_text()
    assert markdown.startswith("# streamjob benchmark results")
    for name in JOB_SCENARIOS:
        assert f"| {name} |" in markdown
    assert "## Cost of checkpointing every 1 s, within one job" in markdown
    assert "## User functions: the job against a plain Python loop" in markdown
    assert "| userfn_ref (plain loop) |" in markdown
    assert "| userfn_ref × 2 processes (the p=2 ceiling) |" in markdown


def test_only_selects_scenarios_and_rejects_unknown_names(tmp_path: Path) -> None:
    done = _run_quick(tmp_path, "--only", "p1,userfn_p2")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert list(results["scenarios"]) == ["p1", "userfn_p2"]
    _check_run(results["scenarios"]["userfn_p2"]["runs"][0], results["scenarios"]["userfn_p2"]["spec"]["records"])
    wrong = _run_quick(tmp_path / "other", "--only", "nonsense")
    assert wrong.returncode == 2 and "unknown scenario" in wrong.stderr
