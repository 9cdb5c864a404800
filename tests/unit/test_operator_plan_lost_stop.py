"""A stop-with-savepoint whose answer is lost: the upgrade or suspension restores what the stop wrote.

An error answering ``POST /savepoints`` (a timeout, "already in progress" on a re-send) is no proof
that no savepoint was taken: the stop may have completed and committed the sinks' transactions, so
restoring an older checkpoint would replay committed records (duplicates through two-phase-commit
sinks). The planner looks for the savepoint first; it falls back only when the job verifiably still
runs without one after ``timeouts.savepointSeconds``, with an Event saying why.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.reconciler.facts import TriggerSavepoint
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import planner_spec

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = planner_spec(timeouts={"savepointSeconds": 30})
SAVEPOINT = "s3://b/c/ns/demo/savepoint-r1"


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def started() -> World:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and w.status.deployment is not None and w.status.deployment.stable)
    w.run_until(lambda w: w.status.last_checkpoint is not None and (w.status.last_checkpoint.id or 0) >= 4)
    return w


def suspended(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.SUSPENDED


def test_upgrade_whose_stop_answer_timed_out_restores_the_savepoint_the_job_stopped_with() -> None:
    w = started()
    w.lost_answers = 1  # the stop reaches the JobMaster and completes; its answer times out
    w.update_spec(image="app:2")
    w.run_until(running)
    assert w.deployed[-1][2] == SAVEPOINT, w.deployed  # not job01/chk-4: its records were committed by the stop
    assert len(w.requests) == 1 and w.requests["r1"].status == "COMPLETED"
    assert "SavepointFailed" not in {r for r, _ in w.events}, w.events
    assert w.status.last_savepoint is not None and w.status.last_savepoint.location == SAVEPOINT


@pytest.mark.parametrize("keys", [True, False], ids=["request-key", "older-jobmaster"])
def test_a_resent_stop_in_progress_waits_then_restores_the_savepoint(keys: bool) -> None:
    w = started()
    w.jm_request_keys = keys  # an older JobMaster ignores the key: the re-send is "already in progress"
    w.savepoint_outcome = "HANG"
    w.lost_answers = 1
    w.update_spec(image="app:2")
    for _ in range(8):
        w.step()
    req = w.status.snapshot_request
    assert req is not None and w.status.operation is not None  # undecided: waiting, not falling back
    assert req.waiting_for, req
    assert w.count(TriggerSavepoint) >= 2 and len(w.requests) == 1  # sent again; one stop at the JobMaster
    if keys:
        assert req.request_id == "r1" and req.error is None  # the key found the stop in progress
    else:
        assert req.error is not None and "already in progress" in req.error
    w.savepoint_outcome = "COMPLETED"
    w.run_until(running)
    assert w.deployed[-1][2] == SAVEPOINT, w.deployed
    assert "SavepointFailed" not in {r for r, _ in w.events}, w.events


def test_job_still_running_without_a_savepoint_falls_back_after_the_timeout_with_its_reason() -> None:
    w = started()
    w.savepoint_outcome = "HANG"
    w.lost_answers = 10**6  # no answer ever arrives; the job keeps running and no savepoint appears
    w.update_spec(image="app:2")
    began = w.now
    latest = w.checkpoints["job01"][-1]
    w.run_until(lambda w: w.status.operation is not None and w.status.operation.step.value != "snapshot")
    assert (w.now - began).total_seconds() >= 30  # savepointSeconds, not at the first error
    w.run_until(running)
    assert w.deployed[-1][2] == f"s3://b/c/ns/demo/job01/chk-{latest}"
    [message] = [m for r, m in w.warnings if r == "SavepointFailed"]
    assert "still runs" in message and "30s" in message and "TimeoutError" in message, message
    assert "continuing from the latest retained checkpoint" in message


def test_suspend_whose_stop_answer_timed_out_keeps_the_savepoint_for_the_resume() -> None:
    w = started()
    w.lost_answers = 1
    w.update_spec(state="suspended")
    w.run_until(suspended)
    assert w.status.restore_from == SAVEPOINT
    assert "SavepointFailed" not in {r for r, _ in w.events}, w.events
    w.update_spec(state="running")
    w.run_until(running)
    assert w.deployed[-1][2] == SAVEPOINT


def test_suspend_resent_while_in_progress_waits_then_keeps_the_savepoint() -> None:
    w = started()
    w.jm_request_keys = False
    w.savepoint_outcome = "HANG"
    w.lost_answers = 1
    w.update_spec(state="suspended")
    for _ in range(5):
        w.step()
    assert not suspended(w) and w.status.snapshot_request is not None
    w.savepoint_outcome = "COMPLETED"
    w.run_until(suspended)
    assert w.status.restore_from == SAVEPOINT


def test_suspend_of_a_job_still_running_without_a_savepoint_falls_back_after_the_timeout() -> None:
    w = started()
    w.savepoint_outcome = "HANG"
    w.lost_answers = 10**6
    w.update_spec(state="suspended")
    began = w.now
    latest = w.checkpoints["job01"][-1]
    w.run_until(suspended)
    assert (w.now - began).total_seconds() >= 30
    assert w.status.restore_from == f"s3://b/c/ns/demo/job01/chk-{latest}"
    [message] = [m for r, m in w.warnings if r == "SavepointFailed"]
    assert "still runs" in message, message


def test_stop_that_stopped_the_job_without_a_savepoint_restores_its_newest_checkpoint_at_once() -> None:
    w = started()
    w.savepoint_outcome = "HANG"
    w.lost_answers = 1
    w.update_spec(image="app:2")
    w.step()
    w.pods["demo-jobmaster-1"].phase = "Failed"  # the job died before its savepoint: storage is the truth
    began, latest = w.now, w.checkpoints["job01"][-1]
    w.run_until(running)
    assert (w.now - began).total_seconds() < 30
    assert w.deployed[-1][2] == f"s3://b/c/ns/demo/job01/chk-{latest}"
    [message] = [m for r, m in w.warnings if r == "SavepointFailed"]
    assert "the job stopped and storage holds no savepoint" in message, message
