"""User metrics on the JobMaster's ``GET /metrics``, scraped from a real job (``jobs/user_metrics.py``).

Each of the two map subtasks registers a counter, a gauge, a meter, a histogram and a grouped
counter; a real scrape must show each kind with the labels job, vertex, subtask, operator (and the
group's), and the counters must agree: the grouped counters of a subtask add up to its counter.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamjob.worker.testing import LocalJob
from tests.integration.jobs.support import job_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def scrape(job: LocalJob) -> dict[str, list[Any]]:
    """Sample name → samples of the job's ``GET /metrics`` (user metrics only)."""
    with urllib.request.urlopen(job.rest_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("streamjob_user_"):
                samples.setdefault(s.name, []).append(s)
    return samples


def counted(metrics: dict[str, list[Any]]) -> dict[str, list[Any]] | None:
    """``metrics`` once all six counters (2 subtasks x plain, even, odd) passed 50 and the meters have a rate."""
    seen = [s for s in metrics.get("streamjob_user_seen_total", []) if s.value > 50]
    rates = metrics.get("streamjob_user_events_rate", [])
    return metrics if len(seen) == 6 and len(rates) == 2 and all(s.value > 0 for s in rates) else None


def test_user_metrics_are_exported_with_their_labels(tmp_path: Path) -> None:
    with LocalJob(job_path("user_metrics.py"), "rate=400", checkpoint_dir=f"{tmp_path}/checkpoints") as job:
        job.wait_for_running()
        metrics = job.poll("user metrics of both subtasks with counts", lambda: counted(scrape(job)), 60)
        job.cancel()
    seen = metrics["streamjob_user_seen_total"]
    plain = {s.labels["subtask"]: s for s in seen if "parity" not in s.labels}
    assert sorted(plain) == ["0", "1"]
    for subtask, sample in plain.items():
        assert {k: sample.labels[k] for k in ("job", "operator", "subtask")} == {
            "job": "user-metrics",
            "operator": "measure",
            "subtask": subtask,
        }
        assert sample.labels["vertex"]
    parity = [s for s in seen if "parity" in s.labels]
    assert sorted((s.labels["subtask"], s.labels["parity"]) for s in parity) == [
        ("0", "even"),
        ("0", "odd"),
        ("1", "even"),
        ("1", "odd"),
    ]
    # Reported together once a second: a subtask's grouped counters add up to its counter.
    for subtask, sample in plain.items():
        assert sum(s.value for s in parity if s.labels["subtask"] == subtask) == sample.value
    assert {s.labels["subtask"] for s in metrics["streamjob_user_last_value"]} == {"0", "1"}
    assert all(s.value > 0 for s in metrics["streamjob_user_events_rate"])
    assert all(s.value > 0 for s in metrics["streamjob_user_events_total"])
    quantiles = {s.labels["quantile"] for s in metrics["streamjob_user_values"]}
    assert quantiles == {"0.5", "0.95", "0.99"}
    assert all(0 <= s.value <= 99 for s in metrics["streamjob_user_values"])
    assert all(s.value > 0 for s in metrics["streamjob_user_values_count"])
    assert all(s.value <= 99 for s in metrics["streamjob_user_values_max"])
