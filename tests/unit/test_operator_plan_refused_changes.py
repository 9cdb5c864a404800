"""A change the operator refuses leaves the deployed job supervised, and is retried or applied later.

An invalid spec (``validation.validate``) with a deployed job: failures are still detected and the job
restarted or its workers replaced with the deployed spec (and its restart policy), savepoints are still
triggered; only the change is refused. An upgrade aborted because ``maxStateAgeSeconds`` could not get a
fresh checkpoint is held like a change with nothing to carry: the job keeps running the deployed spec,
status says so, and the upgrade is retried once a newer checkpoint completes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.reconciler.facts import DeployAttempt, ReplaceWorkers, TriggerSavepoint
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import planner_spec

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = planner_spec()

#: Passes the CRD schema, fails ``validation.validate``: a reserved label.
RESERVED = {"labels": {"streamjob.dev/x": "1"}}
RESERVED_ERROR = "spec.taskManager.labels: 'streamjob.dev/x' is reserved for the operator"


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def started(spec: dict[str, Any] | None = None) -> World:
    w = World(dict(spec or BASE))
    w.run_until(lambda w: running(w) and w.status.deployment is not None and w.status.deployment.stable)
    w.run_until(lambda w: w.status.last_checkpoint is not None and (w.status.last_checkpoint.id or 0) >= 2)
    return w


def made_invalid(w: World) -> None:
    """The user applies a spec that fails validation (and whose restart policy allows no restart)."""
    w.update_spec(taskManager=RESERVED, restartPolicy={"maxRestarts": 0})
    assert RESERVED_ERROR in (w.status.error or "")
    assert w.status.condition("SpecValid").status == "False"  # type: ignore[union-attr]


def refused(w: World) -> None:
    """The invalid change is still refused, in status, and was reported once."""
    assert RESERVED_ERROR in (w.status.error or "")
    assert w.status.condition("SpecValid").status == "False"  # type: ignore[union-attr]
    assert [r for r, _ in w.events].count("InvalidSpec") == 1
    assert w.status.last_reconciled_spec is not None and w.status.last_reconciled_spec["taskManager"]["labels"] == {}
    assert w.status.observed_generation == 1  # the generation running, not the refused one


def deployed_specs(w: World) -> list[StreamJobSpec]:
    return [a.attempt.spec for a in w.actions if isinstance(a, DeployAttempt)]


def test_an_invalid_spec_does_not_stop_a_failed_jobmaster_being_restarted_with_the_deployed_spec() -> None:
    w = started()
    made_invalid(w)
    w.checkpointing = False
    latest = w.checkpoints["job01"][-1]
    w.pods["demo-jobmaster-1"].failure = "pod demo-jobmaster-1 was OOMKilled"
    w.step()
    assert w.status.lifecycle_state is LifecycleState.RECOVERING
    assert w.status.condition("Ready").status == "False"  # type: ignore[union-attr]
    w.run_until(lambda w: w.status.attempt == 2 and running(w), steps=30)
    # restarted per the deployed spec's restart policy (the invalid one allows none), from the latest checkpoint
    assert w.status.restarts.count == 1
    assert w.deployed[-1] == (2, "job01", f"s3://b/c/ns/demo/job01/chk-{latest}", 2)
    assert [s.task_manager.labels for s in deployed_specs(w)] == [{}, {}]
    assert w.status.deployment is not None and w.status.deployment.spec["taskManager"]["labels"] == {}
    assert w.status.condition("Ready").status == "True"  # type: ignore[union-attr]
    for _ in range(3):
        w.step()
    refused(w)


def test_an_invalid_spec_does_not_stop_a_crashed_worker_being_replaced() -> None:
    w = started()
    made_invalid(w)
    pod = w.pods["demo-worker-1-0"]
    pod.phase, pod.failure, pod.finished_at = "Failed", "pod demo-worker-1-0 exited with code 137", w.now
    w.step()
    [replace] = [a for a in w.actions if isinstance(a, ReplaceWorkers)]
    assert replace.delete == ("demo-worker-1-0",) and replace.attempt.spec.task_manager.labels == {}
    w.run_until(lambda w: running(w) and all(p.phase == "Running" and not p.failure for p in w.pods.values()))
    assert w.count(DeployAttempt) == 1 and w.status.attempt == 1 and w.status.restarts.count == 0
    refused(w)


def test_an_invalid_spec_still_takes_a_manual_savepoint_without_redeploying() -> None:
    w = started()
    made_invalid(w)
    w.update_spec(savepointTriggerNonce=7)
    w.run_until(lambda w: w.status.nonces.savepoint == 7, steps=10)
    assert w.count(TriggerSavepoint) == 1 and w.status.last_savepoint is not None
    assert w.count(DeployAttempt) == 1
    assert RESERVED_ERROR in (w.status.error or "")


def test_fixing_the_invalid_spec_applies_the_change() -> None:
    w = started()
    made_invalid(w)
    w.pods["demo-jobmaster-1"].failure = "pod demo-jobmaster-1 was OOMKilled"
    w.run_until(lambda w: w.status.attempt == 2 and running(w), steps=30)
    w.update_spec(taskManager={"labels": {"team": "a"}})
    assert w.status.condition("SpecValid").status == "True"  # type: ignore[union-attr]
    w.run_until(lambda w: w.status.attempt == 3 and running(w), steps=60)
    assert deployed_specs(w)[-1].task_manager.labels == {"team": "a"}
    assert w.deployed[-1][2] == w.status.last_savepoint.location  # type: ignore[union-attr]  # state carried over
    assert w.status.error is None and w.status.observed_generation == w.generation
    assert w.status.last_reconciled_spec == w.status.deployment.spec  # type: ignore[union-attr]


def test_an_upgrade_aborted_for_a_stale_checkpoint_is_held_and_retried_once_a_fresh_one_exists() -> None:
    w = started({**BASE, "timeouts": {"savepointSeconds": 5}})
    w.checkpointing = False
    w.checkpoints_on_request = False  # the job cannot complete the checkpoint the upgrade asks for
    w.now += timedelta(seconds=600)
    w.update_spec(image="app:2", upgradeMode="last-state", maxStateAgeSeconds=60)
    w.run_until(lambda w: w.status.operation is None, steps=20)
    assert "OperationAborted" in [r for r, _ in w.warnings]
    # not done, why, and what retries it
    error = w.status.error or ""
    assert "upgrade aborted" in error and "maxStateAgeSeconds is 60" in error and "retried" in error, error
    held = w.status.held
    assert held is not None and held.spec["image"] == "app:2"
    assert held.checkpoint == f"s3://b/c/ns/demo/job01/chk-{w.checkpoints['job01'][-1]}"
    # the job keeps running the deployed spec, and status says so
    assert running(w) and w.status.deployment is not None and w.status.deployment.spec["image"] == "app:1"
    assert w.status.last_reconciled_spec is not None and w.status.last_reconciled_spec["image"] == "app:1"
    assert w.status.observed_generation == 1
    for _ in range(20):  # no loop of attempts while no newer checkpoint exists
        w.step()
    assert w.count(DeployAttempt) == 1 and [r for r, _ in w.warnings].count("OperationAborted") == 1
    assert w.status.held is not None and running(w)
    # checkpoints complete again: the upgrade is retried and completes
    w.checkpointing = True
    w.checkpoints_on_request = True
    w.run_until(lambda w: w.status.attempt == 2 and running(w), steps=60)
    assert w.status.deployment is not None and w.status.deployment.spec["image"] == "app:2"
    _, job_id, restore, _ = w.deployed[-1]
    assert job_id == "job01" and (restore or "").startswith("s3://b/c/ns/demo/job01/chk-")  # carried over
    assert w.status.held is None and w.status.error is None
    assert w.status.last_reconciled_spec is not None and w.status.last_reconciled_spec["image"] == "app:2"
    assert w.status.observed_generation == 2
