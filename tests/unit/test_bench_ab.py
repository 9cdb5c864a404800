"""The comparison of bench/ab.py (B against A per metric, paired by round) and the reference loop's result."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ab import compare
from bench.harness import expected_value_total
from bench.userfn_ref import loop

pytestmark = pytest.mark.unit


def run(
    ab_round: int, eps: float, process_s: float = 3.0, cpu: float = 500.0, checkpoints: tuple[int, ...] = ()
) -> dict[str, Any]:
    cps = [{"id": i + 1, "duration_ms": d, "final": False} for i, d in enumerate(checkpoints)]
    return {
        "ab_round": ab_round,
        "events_per_s": eps,
        "process_s": process_s,
        "cpu_ns_per_event": cpu,
        "wall_s": 1.0,
        "startup_s": 1.0,
        "cpu_share_per_slot": 1.0,
        "checkpoints": cps,
        "max_slot_peak_rss_mb": 50.0,
        "jobmaster_peak_rss_mb": 60.0,
        "load_average_before": 1.0,
    }


def test_a_drop_of_more_than_3_percent_in_throughput_is_outside_the_limit() -> None:
    c = compare({"A": [run(0, 1000), run(1, 1000)], "B": [run(0, 960), run(1, 965)]}, "p1")
    assert c["events_per_s"]["diff_pct"] == pytest.approx(-3.75)
    assert c["events_per_s"]["within"] is False
    c = compare({"A": [run(0, 1000), run(1, 1000)], "B": [run(0, 975), run(1, 985)]}, "p1")
    assert c["events_per_s"]["within"] is True
    faster = compare({"A": [run(0, 1000)], "B": [run(0, 2000)]}, "p1")
    assert faster["events_per_s"]["diff_pct"] == pytest.approx(100.0) and faster["events_per_s"]["within"] is True


def test_for_times_and_cpu_more_is_worse() -> None:
    c = compare({"A": [run(0, 1000, process_s=3.0, cpu=500)], "B": [run(0, 1000, process_s=3.2, cpu=510)]}, "p1")
    assert c["process_s"]["diff_pct"] == pytest.approx(6.67, abs=0.01) and c["process_s"]["within"] is False
    assert c["cpu_ns_per_event"]["diff_pct"] == pytest.approx(2.0) and c["cpu_ns_per_event"]["within"] is True


def test_pairs_are_taken_by_round_when_a_run_failed() -> None:
    # A's round-0 run failed: B's round-0 run must not be paired with A's round-1 run.
    c = compare({"A": [run(1, 1000)], "B": [run(0, 500), run(1, 1100)]}, "p1")
    assert c["events_per_s"]["paired_diff_pct_median"] == pytest.approx(10.0)
    assert c["events_per_s"]["A"]["runs"] == [1000.0] and c["events_per_s"]["B"]["min"] == 500.0


def test_checkpoint_p50_difference_in_ms_against_the_5_ms_limit() -> None:
    a = [run(0, 1000, checkpoints=(40, 42, 44)), run(1, 1000, checkpoints=(41, 43))]
    c = compare({"A": a, "B": [run(0, 1000, checkpoints=(47, 48, 49)), run(1, 1000, checkpoints=(50,))]}, "cp")
    assert c["checkpoint_p50_ms"] == {"A": 42.0, "B": 48.0, "diff_ms": 6.0, "within": False}
    c = compare({"A": a, "B": [run(0, 1000, checkpoints=(45, 46, 47))]}, "cp")
    assert c["checkpoint_p50_ms"]["diff_ms"] == 4.0 and c["checkpoint_p50_ms"]["within"] is True
    none = compare({"A": [run(0, 1000)], "B": [run(0, 1000)]}, "p1")
    assert none["checkpoint_p50_ms"] == {"A": None, "B": None, "diff_ms": None, "within": None}


def test_a_side_without_runs_has_no_verdict() -> None:
    c = compare({"A": [], "B": [run(0, 1000)]}, "p1")
    assert c["events_per_s"]["diff_pct"] is None and c["events_per_s"]["within"] is None
    assert c["sides"]["A"] is None


def test_the_reference_loop_emits_every_running_sum() -> None:
    assert loop(1000, 7) == (1000, expected_value_total(1000, 7))
    assert loop(25, 10_000) == (25, 25)
