"""The operator and images that cannot be pulled, on the test bed (whose node agent models images).

An upgrade to an image no registry has must not strand the job: its pods wait in ``ErrImagePull`` /
``ImagePullBackOff`` and never start, the operator rolls back to the last stable spec with the state
the upgrade took along, and the results stay exact. A job created with such an image must say why it
does not run (status and Events), end per its restart policy instead of waiting silently, and run
once the image is fixed.
"""

from __future__ import annotations

import uuid

import pytest

from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished, running

# The operator (one per module, watching every namespace) and the counting job of test_operator_jobs.
operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e


PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


def unknown_image() -> str:
    """An image reference that no registry of the bed (or of kind) serves."""
    return f"registry.streamjob.invalid/counting:{uuid.uuid4().hex[:8]}"


def events_of(job: Job) -> list[Json]:
    """The Events posted on the StreamJob, oldest first."""
    items = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/events")["items"]
    ours = [e for e in items if e["involvedObject"].get("name") == job.name]
    return sorted(ours, key=lambda e: (e.get("firstTimestamp") or e.get("eventTime") or "", e["metadata"]["name"]))


def events_until(job: Job, reason: str) -> list[Json]:
    """The StreamJob's Events once one with ``reason`` is among them (they follow the status write)."""

    def found() -> list[Json] | None:
        events = events_of(job)
        return events if any(e["reason"] == reason for e in events) else None

    return job.kube.wait_for(found, 30, f"a {reason} event")


def job_pods(job: Job) -> list[Json]:
    selector = f"streamjob.dev/job={job.name}"
    return list(job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=selector)["items"])


def test_upgrade_to_an_unknown_image_rolls_back_with_state(job: Job, node_agent: NodeAgent) -> None:
    job.create(count=8000, rate=300, upgradeMode="savepoint", timeouts={"upgradeSeconds": 60})
    stable = job.wait(lambda s: checkpointed(s, 2) and bool((s.get("deployment") or {}).get("stable")), "a stable job")
    image = unknown_image()
    job.patch({"image": image})
    upgrade_attempt = stable["attempt"] + 1

    pod = job.pod("jobmaster", upgrade_attempt)
    status = job.wait(rolled_back, "the rollback", timeout=90)
    # `kubectl get sj` says RolledBack, not Running, while the spec still holds the rejected image.
    shown = job.kube.kubectl("get", "sj", "-n", job.namespace, job.name, "--no-headers").stdout.split()
    assert "RolledBack" in shown and "Running" not in shown, shown
    ready = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}["Ready"]
    assert ready == ("True", "RolledBack"), status["conditions"]
    # The upgrade's JobMaster pod was created with the new image, failed its pull and never started.
    assert node_agent.find(job.namespace, pod).containers[0].spec["image"] == image
    assert node_agent.container_state(job.namespace, pod)["waiting"]["reason"] in PULL_FAILURES
    assert not node_agent.started(job.namespace, pod), "a pod whose image cannot be pulled must never start"
    assert status["deployment"]["spec"]["image"] == "streamjob:e2e"
    assert status["attempt"] > upgrade_attempt
    assert image in status["error"] and any(reason in status["error"] for reason in PULL_FAILURES), status["error"]
    # No state dropped: the upgrade's savepoint is what the rolled-back job restored.
    upgrades = [sp for sp in status.get("savepointHistory", []) if sp.get("trigger") == "upgrade"]
    assert len(upgrades) == 1 and status["restoreFrom"] == upgrades[0]["location"], status
    events = events_until(job, "RolledBack")
    rolling_back = [e for e in events if e["reason"] == "RollingBack"]
    assert len(rolling_back) == 1, [e["reason"] for e in events]
    assert rolling_back[0]["type"] == "Warning" and image in rolling_back[0]["message"]
    assert {p["spec"]["containers"][0]["image"] for p in job_pods(job)} == {"streamjob:e2e"}
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 8000)


def rolled_back(s: Json) -> bool:
    return (
        s.get("lifecycleState") == "RolledBack" and not s.get("operation") and "rolling back" in (s.get("error") or "")
    )


def test_job_created_with_an_unknown_image_is_reported_then_runs_once_fixed(job: Job, node_agent: NodeAgent) -> None:
    image = unknown_image()
    job.create(
        count=1500, rate=300, image=image, restartPolicy={"maxRestarts": 1, "backoff": {"initialDelaySeconds": 0.5}}
    )
    status = job.wait(lambda s: s.get("lifecycleState") == "Failed", "the job to fail for its image", timeout=60)
    error = status["error"]
    assert image in error and any(reason in error for reason in PULL_FAILURES), error
    assert "gave up after 1 restarts" in error
    assert status["restarts"]["count"] == 2 and image in status["restarts"]["lastReason"]
    events = events_until(job, "JobFailed")
    restarting = [e for e in events if e["reason"] == "Restarting"]
    failed = [e for e in events if e["reason"] == "JobFailed"]
    assert restarting and all(e["type"] == "Warning" and image in e["message"] for e in restarting), restarting
    assert len(failed) == 1 and failed[0]["type"] == "Warning" and failed[0]["message"] == error
    job.kube.wait_for(lambda: not job_pods(job), 30, "the failed job's pods to be deleted")
    for attempt in range(1, status["attempt"] + 1):
        pod = job.pod("jobmaster", attempt)
        assert node_agent.container_state(job.namespace, pod)["waiting"]["reason"] in PULL_FAILURES
        assert not node_agent.started(job.namespace, pod)
    # Fixing the image is a spec change: the job starts.
    job.patch({"image": "streamjob:e2e"})
    job.wait(running, "the job to run with the fixed image", timeout=60)
    job.wait(finished, "the job to finish", timeout=120)
    check_exact(job.out, 1500)
