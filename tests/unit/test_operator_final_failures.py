"""The terminal contract's operator side: a JobMaster pod that ended final fails the job instead of restarting it.

The pod observer reads the termination message (``PodView.final``), ``reconciler.verdict`` waits
for the JobMaster's verdict while workers just ended, and the planner fails the job (or rolls an
upgrade back) whatever the restart policy allows. Driven against ``operator.testing``'s fake world.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.observer.pods import PodView, view_pod
from streamjob.operator.reconciler.facts import DeployAttempt
from streamjob.operator.reconciler.verdict import VERDICT_GRACE_S, awaiting_jobmaster, final_failure
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import pod_object, terminated
from streamjob.worker.protocol.rest import JobState
from streamjob.worker.protocol.termination import FINAL_MARKER, format_message

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
    "restartPolicy": {"maxRestarts": 100, "backoff": {"initialDelaySeconds": 1, "maxDelaySeconds": 4}},
}
REASON = (
    "worker slot 0 cannot load the job: the job's entrypoint raised RuntimeError: refuses to load in a worker "
    + "x" * 300
    + "; every attempt would load it the same way, so the job fails. Fix the job, or the worker's image or "
    "environment, and start it again"
)


def jobmaster_pod(message: str, *, code: int = 2, reason: str = "Error") -> dict[str, Any]:
    return pod_object(
        "jobmaster", "Failed", containers=[{"name": "jobmaster", "state": terminated(code, reason, message)}]
    )


# -- the pod observer ------------------------------------------------------------------------------


def test_a_final_termination_message_is_read_whole_and_marked_final() -> None:
    view = view_pod(jobmaster_pod(format_message(REASON, final=True)), now=NOW, start_timeout_s=60)
    assert view.final and view.failure is not None
    assert view.failure.startswith("pod j-jobmaster-1 exited with code 2 (Error): worker slot 0 cannot load")
    assert view.failure.endswith("and start it again"), "the fix at the end of a long reason is kept"
    assert FINAL_MARKER not in view.failure


def test_an_ordinary_message_or_a_log_tail_is_not_final() -> None:
    plain = view_pod(jobmaster_pod(format_message("worker slot 1 was lost", final=False)), now=NOW, start_timeout_s=60)
    assert not plain.final and plain.failure == "pod j-jobmaster-1 exited with code 2 (Error): worker slot 1 was lost"
    logs = "\n".join(f"INFO line {i}" for i in range(80)) + "\nTraceback ...\nValueError: bad\n"
    tail = view_pod(jobmaster_pod(logs, code=1), now=NOW, start_timeout_s=60)
    assert not tail.final and tail.failure is not None and tail.failure.endswith("ValueError: bad")
    assert "line 3 " not in tail.failure
    oom = view_pod(jobmaster_pod(format_message(REASON, final=True), code=137, reason="OOMKilled"), now=NOW,
                   start_timeout_s=60)  # fmt: skip
    assert not oom.final and "OOMKilled" in (oom.failure or "")


def test_the_marker_in_a_log_tail_is_final_when_the_file_was_not_written() -> None:
    logs = "INFO job attempt 1 failed\n" + FINAL_MARKER + "\nerror: the job's entrypoint nosuch:build raised\n"
    view = view_pod(jobmaster_pod(logs), now=NOW, start_timeout_s=60)
    assert view.final and (view.failure or "").endswith("error: the job's entrypoint nosuch:build raised")


# -- waiting for the JobMaster's verdict -----------------------------------------------------------


def view(component: str, **fields: Any) -> PodView:
    base: dict[str, Any] = {"name": component, "component": component, "attempt": 1, "phase": "Running",
                            "ip": "10.0.0.1", "running": True, "failure": None}  # fmt: skip
    return PodView(**{**base, **fields})


def test_failed_workers_wait_for_a_live_jobmaster_pod_a_bounded_time() -> None:
    worker = view("worker", phase="Failed", running=False, failure="pod w exited with code 1", finished_at=NOW)
    jm = view("jobmaster")
    assert awaiting_jobmaster(NOW, [jm, worker], reachable=True, state=JobState.RUNNING)
    later = NOW + timedelta(seconds=VERDICT_GRACE_S + 0.1)
    assert not awaiting_jobmaster(later, [jm, worker], reachable=True, state=JobState.RUNNING)
    ended = view("jobmaster", phase="Failed", running=False, failure="pod jm exited with code 2: x", final=True)
    assert not awaiting_jobmaster(NOW, [ended, worker], reachable=False, state=None)
    assert final_failure([ended, worker]) == "pod jm exited with code 2: x"
    assert final_failure([view("jobmaster", failure="pod jm exited with code 1", final=False), worker]) is None
    unstarted = view("worker", phase="Pending", running=False, failure="pod w cannot start: ImagePullBackOff")
    assert not awaiting_jobmaster(NOW, [jm, unstarted], reachable=True, state=JobState.RUNNING)


def test_a_jobmaster_reporting_failed_is_waited_for_until_its_pod_ends() -> None:
    assert awaiting_jobmaster(NOW, [view("jobmaster"), view("worker")], reachable=True, state=JobState.FAILED)
    assert not awaiting_jobmaster(NOW, [view("jobmaster"), view("worker")], reachable=True, state=JobState.RUNNING)


# -- the planner -----------------------------------------------------------------------------------


def failed(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.FAILED


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def assert_failed_for_good(w: World, attempts: int) -> None:
    """Failed with the reason, one Warning, no restart counted, and nothing deployed for several rounds."""
    assert w.status.restarts.count == 0 and w.status.attempt == attempts
    error = w.status.error or ""
    assert "cannot load the job: boom" in error and "not restarted" in error and "restartNonce" in error, error
    assert [m for r, m in w.warnings if r == "JobFailed"] == [error]
    assert not [r for r, _ in w.events if r == "Restarting"]
    deployed = w.count(DeployAttempt)
    for _ in range(10):
        w.step()
    assert failed(w) and w.count(DeployAttempt) == deployed and w.status.attempt == attempts and not w.pods


def test_a_first_deploy_that_fails_final_is_failed_at_once_whatever_the_policy() -> None:
    w = World(dict(BASE))
    w.unloadable_images.add("app:1")
    w.run_until(failed)
    assert_failed_for_good(w, attempts=1)
    w.update_spec(image="app:2")  # fixed: the lineage began empty and never checkpointed, so it starts empty
    w.run_until(running)
    assert w.deployed[-1][1:3] == ("job01", None) and w.status.error is None


def test_a_running_job_whose_jobmaster_ends_final_fails_and_a_restart_nonce_resumes_its_lineage() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and len(w.checkpoints.get("job01", [])) >= 2)
    w.checkpointing = False
    jm = w.pods["demo-jobmaster-1"]
    jm.phase, jm.failure, jm.finished_at, jm.final = (
        "Failed",
        "pod demo-jobmaster-1 exited with code 2: worker slot 0 cannot load the job: boom",
        w.now,
        True,
    )
    w.step()
    assert failed(w)
    assert_failed_for_good(w, attempts=1)
    w.update_spec(restartNonce=1)
    w.run_until(running)
    latest = w.checkpoint_location("job01", w.checkpoints["job01"][-1])
    assert w.deployed[-1][1:3] == ("job01", latest)


def test_a_worker_failing_first_waits_for_the_jobmasters_final_verdict() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and len(w.checkpoints.get("job01", [])) >= 1)
    worker = w.pods["demo-worker-1-0"]
    worker.phase, worker.failure, worker.finished_at = "Failed", "pod demo-worker-1-0 exited with code 1", w.now
    w.jm_state = JobState.FAILED  # the JobMaster failed the job and is about to exit
    for _ in range(3):
        w.step()
        assert w.status.lifecycle_state is LifecycleState.RUNNING and w.status.restarts.count == 0
    jm = w.pods["demo-jobmaster-1"]
    jm.phase, jm.failure, jm.finished_at, jm.final = (
        "Failed",
        "pod demo-jobmaster-1 exited with code 2: worker slot 0 cannot load the job: boom",
        w.now,
        True,
    )
    w.step()
    assert failed(w) and "cannot load the job: boom" in (w.status.error or "")


def test_a_worker_failure_the_jobmaster_calls_ordinary_restarts() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and len(w.checkpoints.get("job01", [])) >= 1)
    worker = w.pods["demo-worker-1-0"]
    worker.phase, worker.failure, worker.finished_at = "Failed", "pod demo-worker-1-0 exited with code 137", w.now
    w.step()
    assert w.status.restarts.count == 0  # the JobMaster's verdict first
    jm = w.pods["demo-jobmaster-1"]
    jm.phase, jm.failure, jm.finished_at = "Failed", "pod demo-jobmaster-1 exited with code 5: slot 0 was lost", w.now
    w.step()
    assert w.status.lifecycle_state is LifecycleState.RECOVERING and w.status.restarts.count == 1
    w.run_until(running)


def test_a_silent_worker_failure_still_restarts_after_the_grace() -> None:
    """A worker that failed without crashing (its container cannot restart) is no pod to replace: restart."""
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and len(w.checkpoints.get("job01", [])) >= 1)
    worker = w.pods["demo-worker-1-0"]
    worker.failure, worker.finished_at = "pod demo-worker-1-0 cannot start its container: CrashLoopBackOff", w.now
    w.run_until(lambda w: w.status.restarts.count == 1, steps=int(VERDICT_GRACE_S) + 2)


@pytest.mark.parametrize("rollback", [True, False])
def test_an_upgrade_that_fails_final_rolls_back_if_it_can_else_fails(rollback: bool) -> None:
    w = World({**BASE, "rollbackOnFailure": rollback})
    w.run_until(lambda w: running(w) and w.status.deployment is not None and w.status.deployment.stable)
    w.unloadable_images.add("app:2")
    w.update_spec(image="app:2")
    if rollback:
        w.run_until(lambda w: w.status.operation is not None and w.status.operation.kind.value == "rollback")
        w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.ROLLED_BACK and w.status.operation is None)
        assert w.status.deployment is not None and w.status.deployment.spec["image"] == "app:1"
        assert "rolling back" in (w.status.error or "") and w.status.restarts.count == 0
    else:
        w.run_until(failed)
        assert w.status.restarts.count == 0 and "cannot load the job" in (w.status.error or "")
