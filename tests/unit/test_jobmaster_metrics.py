"""The JobMaster's Prometheus metrics: every family carries the ``job`` label."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.attempt import TaskMetrics
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.metrics import render_metrics
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.loader import load_job

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"


def _jobmaster(tmp_path: Path) -> JobMaster:
    loaded = load_job(str(EXAMPLE), [])
    config = parse_job_config(
        {"name": "balance", "entrypoint": str(EXAMPLE), "checkpoints_uri": tmp_path.as_uri()}, source="(test)"
    )
    return JobMaster(resolve_plan(config, loaded, default_checkpoints_uri=tmp_path.as_uri()))


def test_every_sample_names_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jm = _jobmaster(tmp_path)
    jm.restarts = 2
    counters = {("transactions", 0): TaskMetrics(5, 5, 0.0)}
    monkeypatch.setattr(JobMaster, "task_metrics", property(lambda _: counters))  # the attempt's counters
    body, _ = render_metrics(jm)
    samples = [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]
    assert samples
    assert all(s.labels.get("job") == "balance" for s in samples), samples
    restarts = [s for s in samples if s.name == "streamjob_restarts_total"]
    assert [(s.labels, s.value) for s in restarts] == [({"job": "balance"}, 2.0)]
