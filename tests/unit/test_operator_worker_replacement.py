"""The planner replaces a crashed worker pod and leaves the attempt (and its JobMaster pod) alone.

The JobMaster recovers a worker failure in place (``worker/jobmaster/jobmaster.py``); the operator's
part is the pod (``reconciler/workers.py``). A JobMaster that failed, reports the job ended, or a
worker that failed without crashing, stays an attempt failure for the restart policy.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.reconciler.facts import DeployAttempt, ReplaceWorkers
from streamjob.operator.reconciler.workers import replacement_names
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import planner_spec
from streamjob.worker.protocol.rest import JobState

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = planner_spec()


def healthy(w: World) -> bool:
    pods = list(w.pods.values())
    return (
        w.status.lifecycle_state is LifecycleState.RUNNING
        and w.status.operation is None
        and len(pods) == 3
        and all(p.phase == "Running" and p.failure is None for p in pods)
    )


def crash(w: World, name: str) -> None:
    pod = w.pods[name]
    pod.phase, pod.failure, pod.finished_at = "Failed", f"pod {name} exited with code 137", w.now


def test_ten_worker_crashes_replace_ten_pods_and_never_restart_the_attempt() -> None:
    w = World(dict(BASE))
    w.run_until(healthy)
    jobmaster = w.pods["demo-jobmaster-1"]
    seen: set[str] = set(w.pods)
    for n in range(10):
        victim = sorted(p for p in w.pods if "worker" in p)[n % 2]
        crash(w, victim)
        w.step()
        [action] = [a for a in w.actions if isinstance(a, ReplaceWorkers)][n:]
        assert action.delete == (victim,) and len(action.create) == 1
        assert action.create[0] not in seen and action.create[0].startswith("demo-worker-1-")
        assert action.jobmaster_ip == jobmaster.ip and action.attempt.attempt == 1
        seen.add(action.create[0])
        w.run_until(healthy, steps=5)
    assert w.pods["demo-jobmaster-1"] is jobmaster and w.count(DeployAttempt) == 1
    assert w.status.restarts.count == 0 and w.status.attempt == 1
    assert [r for r, _ in w.warnings].count("WorkerReplaced") == 10


def test_a_worker_crashing_while_the_attempt_starts_is_replaced_too() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: len([p for p in w.pods.values() if p.phase == "Running"]) == 3)
    assert w.status.operation is not None  # still verifying the deployment
    crash(w, "demo-worker-1-0")
    w.step()
    assert [a.create for a in w.actions if isinstance(a, ReplaceWorkers)] == [("demo-worker-1-0-r1",)]
    w.run_until(healthy)
    assert w.count(DeployAttempt) == 1 and w.status.restarts.count == 0


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.CANCELED])
def test_a_crashed_worker_of_a_jobmaster_that_gave_up_is_no_replacement(state: JobState) -> None:
    w = World(dict(BASE))
    w.run_until(healthy)
    w.jm_state = state
    crash(w, "demo-worker-1-1")
    for _ in range(3):
        w.step()
    assert w.count(ReplaceWorkers) == 0


def test_a_crashed_worker_beside_a_failed_jobmaster_restarts_the_attempt() -> None:
    w = World(dict(BASE))
    w.run_until(healthy)
    crash(w, "demo-worker-1-1")
    crash(w, "demo-jobmaster-1")
    w.step()
    assert w.count(ReplaceWorkers) == 0
    assert w.status.restarts.count == 1 and w.status.lifecycle_state is LifecycleState.RECOVERING
    w.run_until(healthy)
    assert w.status.attempt == 2


def test_max_restarts_zero_in_the_live_spec_stops_replacements_and_the_job_fails() -> None:
    """The JobMaster's strategy was rendered at deploy time; a policy changed since to no restarts wins."""
    w = World(dict(BASE))
    w.run_until(healthy)
    w.spec = {**BASE, "restartPolicy": {"maxRestarts": 0}}
    w.generation += 1
    w.step()
    crash(w, "demo-worker-1-1")
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.FAILED, steps=30)
    assert w.count(ReplaceWorkers) == 0 and "gave up after 0 restarts" in (w.status.error or "")


def test_replacement_names_are_fresh_deterministic_and_never_in_use() -> None:
    base = {"j-worker-3-0", "j-worker-3-1"}
    assert replacement_names(["j-worker-3-0"], base) == ["j-worker-3-0-r1"]
    assert replacement_names(["j-worker-3-0-r1", "j-worker-3-1"], {"j-worker-3-0-r1", "j-worker-3-1"}) == [
        "j-worker-3-0-r2",
        "j-worker-3-1-r3",
    ]
    assert replacement_names(["j-worker-3-1"], {"j-worker-3-0-r7", "j-worker-3-1"}) == ["j-worker-3-1-r8"]


def test_a_worker_on_a_lost_node_is_force_replaced_in_place() -> None:
    """Its pod stays Running in the API (no kubelet reports its end): lost, it is replaced like a crash."""
    w = World(dict(BASE))
    w.run_until(healthy)
    jobmaster = w.pods["demo-jobmaster-1"]
    w.lose_node("demo-worker-1-1")
    w.step()
    [action] = [a for a in w.actions if isinstance(a, ReplaceWorkers)]
    assert action.delete == ("demo-worker-1-1",) and action.create == ("demo-worker-1-1-r1",)
    w.run_until(healthy, steps=5)
    assert w.pods["demo-jobmaster-1"] is jobmaster and w.count(DeployAttempt) == 1
    assert w.status.restarts.count == 0 and w.status.attempt == 1
    [(_, message)] = [(r, m) for r, m in w.warnings if r == "WorkerReplaced"]
    assert "node n2" in message


def test_a_lost_worker_beside_one_still_starting_waits_like_a_crash() -> None:
    """A worker that failed without ending (not lost, not Failed) keeps the attempt failure path."""
    w = World(dict(BASE))
    w.run_until(healthy)
    w.lose_node("demo-worker-1-0")
    w.pods["demo-worker-1-1"].failure = "pod demo-worker-1-1 is being deleted (evicted, drained or deleted by someone)"
    w.step()
    assert w.count(ReplaceWorkers) == 0 and w.status.restarts.count == 1


def test_a_jobmaster_on_a_lost_node_restarts_the_attempt_without_waiting_for_its_pod() -> None:
    """No kubelet ever confirms its deletion: the teardown counts it as ended and force-deletes it."""
    w = World(dict(BASE))
    w.slow_deletion = True
    w.run_until(lambda w: healthy(w) and bool(w.checkpoints.get(w.status.job_id or "")))
    latest = w.checkpoints[w.status.job_id or ""][-1]
    w.lose_node("demo-jobmaster-1", "demo-worker-1-1")
    w.step()
    assert w.count(ReplaceWorkers) == 0 and w.status.restarts.count == 1
    assert "gone with its node" in (w.status.restarts.last_reason or "")
    w.run_until(healthy, steps=20)
    assert w.status.attempt == 2 and w.status.job_id == w.deployments[0].job_id
    restore = w.deployments[-1].restore_from or ""
    assert restore.rsplit("/chk-", 1)[1].isdigit() and int(restore.rsplit("/chk-", 1)[1]) >= latest
