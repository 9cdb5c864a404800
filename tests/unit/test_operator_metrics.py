"""The operator's per-job metrics: state, restarts, failures by reason, checkpoint age, savepoint failures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamjob.operator.metrics import Metrics
from streamjob.operator.model.status import FailureInfo, LifecycleState, RestartsStatus, SnapshotInfo, StreamJobStatus

pytestmark = pytest.mark.unit

KEY = ("ns", "job")
NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def value(m: Metrics, metric: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(metric, labels)


def test_per_job_series_follow_the_status_and_the_events_and_go_with_the_job() -> None:
    m = Metrics()
    created = StreamJobStatus()
    running = StreamJobStatus(
        lifecycle_state=LifecycleState.RUNNING,
        last_checkpoint=SnapshotInfo(kind="checkpoint", location="s3://b/c", time="2026-01-01T00:00:30Z"),
    )
    m.observe(KEY, created, running, NOW)
    assert value(m, "streamjob_job_state", namespace="ns", name="job", state="Running") == 1
    assert value(m, "streamjob_job_state", namespace="ns", name="job", state="Failed") == 0
    assert value(m, "streamjob_checkpoint_age_seconds", namespace="ns", name="job") == 30
    failing = running.model_copy(
        update={
            "lifecycle_state": LifecycleState.RECOVERING,
            "restarts": RestartsStatus(count=1),
            "last_failure": FailureInfo(attempt=1, summary="ValueError: x", exception="ValueError"),
        }
    )
    m.observe(KEY, running, failing, NOW, ["AttemptFailed", "Restarting"])
    m.observe(KEY, failing, failing, NOW, ["SavepointFailed"])
    no_report = failing.model_copy(update={"last_failure": FailureInfo(attempt=2, summary="pod x exited")})
    m.observe(KEY, failing, no_report, NOW, ["AttemptFailed"])
    assert value(m, "streamjob_job_failures_total", namespace="ns", name="job", reason="ValueError") == 1
    assert value(m, "streamjob_job_failures_total", namespace="ns", name="job", reason="PodFailed") == 1
    assert value(m, "streamjob_job_restarts_total", namespace="ns", name="job") == 1
    assert value(m, "streamjob_savepoint_failures_total", namespace="ns", name="job") == 1
    assert value(m, "streamjob_job_state", namespace="ns", name="job", state="Recovering") == 1
    assert value(m, "streamjob_jobs", state="Recovering") == 1
    m.forget(KEY)
    assert value(m, "streamjob_job_state", namespace="ns", name="job", state="Recovering") is None
    assert value(m, "streamjob_job_failures_total", namespace="ns", name="job", reason="ValueError") is None
    assert value(m, "streamjob_jobs", state="Recovering") == 0


def test_restarts_the_jobmaster_makes_in_place_count_in_the_restarts_metric() -> None:
    m = Metrics()
    running = StreamJobStatus(lifecycle_state=LifecycleState.RUNNING)
    twice = running.model_copy(update={"restarts": RestartsStatus(in_place=2)})
    m.observe(KEY, running, twice, NOW)
    m.observe(KEY, twice, twice, NOW)
    assert value(m, "streamjob_job_restarts_total", namespace="ns", name="job") == 2
