"""The root cause of a failed attempt: in status (one line), in a Warning (the traceback), pods kept for their logs.

Driven against ``operator.testing``'s fake world: the JobMaster reports ``failure_detail`` while it
answers, then its pod ends; the planner must have kept the report, name it in ``status.error`` and
``status.lastFailure``, post one ``AttemptFailed`` Warning holding the traceback's last lines, keep
the failed attempt's ended pods (``DeletePods.retain_*``) and delete them once their time is up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.reconciler.facts import DeletePods, DeleteRetained
from streamjob.operator.reconciler.root_cause import EVENT_CHARS, RETAINED_ATTEMPTS, one_line, summarize
from streamjob.operator.testing import PlannerWorld as World
from streamjob.worker.protocol.rest import FailureDetail, JobState

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
    "restartPolicy": {"maxRestarts": 3, "backoff": {"initialDelaySeconds": 1}},
}
TRACEBACK = (*(f'  File "/app/job.py", line {i}, in step_{i}' for i in range(18)), "ValueError: bad record 42")
DETAIL = FailureDetail(
    exception="ValueError", message="bad record 42", task="parse (2)", operator_uid="parse", traceback=TRACEBACK
)


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def fail_attempt(w: World, *, report: bool = True) -> int:
    """A task raises: the JobMaster says FAILED (with the report), a worker ends, then the JobMaster's pod."""
    dep = w.status.deployment
    assert dep is not None
    attempt = dep.attempt
    w.jm_state = JobState.FAILED
    w.jm_detail = DETAIL if report else None
    worker = w.pods[f"demo-worker-{attempt}-0"]
    worker.phase, worker.failure, worker.finished_at = "Failed", f"pod {worker.name} exited with code 1", w.now
    w.step()  # the JobMaster still answers: its report is kept, its verdict awaited
    jm = w.pods[f"demo-jobmaster-{attempt}"]
    jm.phase, jm.finished_at = "Failed", w.now
    jm.failure = f"pod {jm.name} exited with code 5: task parse (2) failed: ValueError: bad record 42"
    for pod in w.pods.values():
        if pod.attempt == attempt and pod.phase == "Running":
            pod.phase, pod.finished_at = "Succeeded", w.now
    w.jm_state, w.jm_detail = "RUNNING", None
    w.step()
    return attempt


def test_the_reported_exception_is_the_error_the_warning_holds_the_traceback_and_the_pods_are_kept() -> None:
    w = World(SPEC)
    w.run_until(running)
    attempt = fail_attempt(w)
    st = w.status
    assert st.error == f"ValueError: bad record 42 (operator 'parse', task parse (2)) in attempt {attempt}"
    assert "\n" not in (st.error or "")
    last = st.last_failure
    assert last is not None and last.attempt == attempt and last.exception == "ValueError"
    assert last.operator_uid == "parse" and last.traceback == list(TRACEBACK)
    kept = [f"demo-jobmaster-{attempt}", f"demo-worker-{attempt}-0", f"demo-worker-{attempt}-1"]
    assert sorted(last.retained_pods) == kept
    assert last.retained_until is not None
    warnings = [m for r, m in w.warnings if r == "AttemptFailed"]
    assert len(warnings) == 1, w.warnings
    text = warnings[0]
    assert text.startswith(f"attempt {attempt} failed: ValueError: bad record 42")
    assert "ValueError: bad record 42\npods kept" in text and "line 17, in step_17" in text
    assert len(text) <= EVENT_CHARS and "kubectl logs" in text
    assert st.restarts.count == 1 and st.restarts.last_reason == st.error
    deletes = [a for a in w.actions if isinstance(a, DeletePods) and a.retain_attempt == attempt]
    assert deletes and deletes[0].retain_until == last.retained_until
    assert sorted(w.retained) == sorted(last.retained_pods), "the ended pods were kept, not deleted"
    w.run_until(running)  # the next attempt runs; the kept pods are no part of it
    assert all(p.attempt != attempt for p in w.pods.values()) and len(w.retained) == 3
    assert w.status.error is None and w.status.last_failure == last, "recovery clears the error, keeps the cause"


def test_kept_pods_are_deleted_when_their_time_is_up() -> None:
    w = World(SPEC)
    w.pod_retention_s = 30
    w.run_until(running)
    fail_attempt(w)
    w.run_until(running)
    assert w.retained
    w.run_until(lambda world: not world.retained, steps=40)
    assert w.count(DeleteRetained) >= 1


def test_only_the_newest_failed_attempts_keep_their_pods() -> None:
    w = World(SPEC)
    w.run_until(running)
    attempts = []
    for _ in range(RETAINED_ATTEMPTS + 1):
        attempts.append(fail_attempt(w))
        w.run_until(running)
    w.step()
    assert {p.attempt for p in w.retained.values()} == set(attempts[-RETAINED_ATTEMPTS:])


def test_without_retention_nothing_is_kept() -> None:
    w = World(SPEC)
    w.pod_retention_s = 0
    w.run_until(running)
    fail_attempt(w)
    assert not w.retained and w.status.last_failure is not None and not w.status.last_failure.retained_pods


def test_without_a_report_the_pod_says_why() -> None:
    w = World(SPEC)
    w.run_until(running)
    attempt = fail_attempt(w, report=False)
    assert w.status.error is not None and w.status.error.startswith(f"pod demo-jobmaster-{attempt} exited with code 5")
    last = w.status.last_failure
    assert last is not None and last.exception is None and last.summary == w.status.error
    assert [r for r, _ in w.warnings].count("AttemptFailed") == 1


def test_summaries_are_one_bounded_line() -> None:
    long = FailureDetail(exception="E", message="x\n" * 500, task=None, operator_uid=None)
    text = summarize(long)
    assert "\n" not in text and len(text) <= 400 and text.endswith("...")
    assert summarize(DETAIL) == "ValueError: bad record 42 (operator 'parse', task parse (2))"
    assert one_line("a\n\n b \nc") == "a | b | c"


def test_a_failed_job_keeps_its_pods_too() -> None:
    spec = {**SPEC, "restartPolicy": {"maxRestarts": 0}}
    w = World(spec)
    w.run_until(running)
    attempt = fail_attempt(w)
    assert w.status.lifecycle_state is LifecycleState.FAILED
    assert w.status.error is not None and w.status.error.startswith("ValueError: bad record 42")
    assert {p.attempt for p in w.retained.values()} == {attempt}
    w.now += timedelta(hours=2)
    w.step()
    assert not w.retained


def _pod(name: str, attempt: int, phase: str) -> dict[str, Any]:
    labels = {
        "streamjob.dev/job": "demo",
        "streamjob.dev/attempt": str(attempt),
        "app.kubernetes.io/component": "worker",
    }
    return {"kind": "Pod", "metadata": {"name": name, "labels": labels}, "status": {"phase": phase}}


def test_the_controller_relabels_ended_pods_of_the_failed_attempt_and_deletes_the_rest() -> None:
    import asyncio

    from streamjob.operator import controller
    from streamjob.operator.testing import fake_deps

    deps, kube, _, _ = fake_deps(SPEC)
    for pod in (_pod("w-1-0", 1, "Failed"), _pod("w-1-1", 1, "Running"), _pod("w-0-0", 0, "Failed")):
        kube.objects[("Pod", pod["metadata"]["name"])] = pod
    assert kube.job is not None
    action = DeletePods(keep_attempt=None, grace_seconds=1, retain_attempt=1, retain_until="2026-01-01T01:00:00Z")
    asyncio.run(controller.delete_pods(deps, kube.job, keep_attempt=None, grace=1, retain=action))
    assert list(kube.retained) == ["w-1-0"], "only the ended pod of the failed attempt is kept"
    kept = kube.retained["w-1-0"]["metadata"]
    assert "streamjob.dev/job" not in kept["labels"] and kept["labels"]["streamjob.dev/retained-for"] == "demo"
    assert kept["annotations"]["streamjob.dev/retained-until"] == "2026-01-01T01:00:00Z"
    assert not [k for k in kube.objects if k[0] == "Pod"], "the running pod and the older attempt's are deleted"
