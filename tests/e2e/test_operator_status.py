"""Status and Events of a steady job on the test bed: no Event per checkpoint, conditions and generation true.

A job checkpointing every 300 ms completes dozens of checkpoints; its Events must stay the two of its
deployment (``Deploying``, ``JobRunning``), at that rate ~3,600 fewer per hour than one per checkpoint.
Progress shows in ``status.lastCheckpoint`` and the conditions; ``observedGeneration`` follows the spec.
"""

from __future__ import annotations

import pytest

from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_images import events_of
from tests.e2e.test_operator_jobs import Job, checkpointed

operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e

CHECKPOINTS = 30


def test_a_steady_job_posts_no_event_per_checkpoint_and_its_status_is_true(job: Job) -> None:
    job.create(count=200_000, rate=200)
    first = job.wait(checkpointed, "the first checkpoint", timeout=120)
    start = int(first["lastCheckpoint"]["id"])
    status = job.wait(lambda s: checkpointed(s, start + CHECKPOINTS), f"{CHECKPOINTS} more checkpoints", timeout=180)
    reasons = [e["reason"] for e in events_of(job)]
    assert reasons == ["Deploying", "JobRunning"], reasons
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Ready"] == ("True", "Running") and conditions["Stable"] == ("True", "Stable"), conditions
    assert conditions["CheckpointsProgressing"][0] == "True", conditions
    assert conditions["PodsScheduled"] == ("True", "Scheduled"), conditions
    body = job.kube.raw.get(jobs.sj_path(job.namespace, job.name))
    assert status["observedGeneration"] == body["metadata"]["generation"]
    # A change that redeploys nothing (the savepoint history size) is still observed.
    job.patch({"savepointHistorySize": 5})
    generation = body["metadata"]["generation"] + 1
    job.wait(lambda s: s.get("observedGeneration") == generation, "the new generation to be observed", timeout=30)
    assert [e["reason"] for e in events_of(job)] == ["Deploying", "JobRunning"]
