"""The planner's rescale in place (``reconciler/rescale.py``) against the fake world: no mocks.

A parallelism-only change of a Running job keeps the attempt and its JobMaster: scale up creates the
extra worker pods first and asks the JobMaster once they run and registered; scale down asks first
and deletes the surplus pods once the JobMaster let their slots go. Everything else, and a rescale
that fails, falls back to the full upgrade with a ``RescaleFallback`` Event.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.model.status import OperationKind, OperationStep
from streamjob.operator.reconciler.facts import DeleteWorkers, ReplaceWorkers, RescaleJob, TriggerSavepoint
from streamjob.operator.reconciler.rescale import new_worker_names, surplus_workers
from streamjob.operator.resources.labels import JobRef
from streamjob.operator.testing import FakePod, PlannerWorld
from streamjob.worker.protocol.rest import RescaleStatus

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 1,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
}


def running(w: PlannerWorld) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def started(**spec: Any) -> PlannerWorld:
    w = PlannerWorld({**BASE, **spec})
    w.run_until(lambda w: running(w) and bool(w.checkpoints.get("job01")))
    return w


def workers(w: PlannerWorld) -> list[str]:
    return sorted(n for n, p in w.pods.items() if p.component == "worker")


def test_scale_up_creates_workers_first_then_rescales_the_same_attempt() -> None:
    w = started()
    jobmaster = "demo-jobmaster-1"
    w.update_spec(parallelism=3)  # what `kubectl scale sj/demo --replicas=3` writes
    op = w.status.operation
    assert op is not None and op.kind is OperationKind.RESCALE and op.step is OperationStep.DEPLOY
    assert op.attempt == 1 and w.status.lifecycle_state is LifecycleState.UPGRADING
    assert w.count(ReplaceWorkers) == 1 and w.count(RescaleJob) == 0, "the pods come before the request"
    assert workers(w) == ["demo-worker-1-0", "demo-worker-1-1", "demo-worker-1-2"]
    w.step()  # the new pods run and register
    w.run_until(lambda w: w.count(RescaleJob) == 1)
    w.run_until(running)
    assert w.jm_parallelism == 3 and w.status.parallelism == 3
    assert len(w.deployed) == 1 and jobmaster in w.pods, "the JobMaster and the attempt stay"
    dep = w.status.deployment
    assert dep is not None and dep.attempt == 1 and dep.spec["parallelism"] == 3 and dep.generation == 2
    assert w.count(TriggerSavepoint) == 0 and w.count(ReplaceWorkers) == 1
    [rescaled] = [m for r, m in w.events if r == "Rescaled"]
    assert "from 1 to 3 in place" in rescaled and "900 ms" in rescaled and "savepoint-rescale" in rescaled
    assert not w.warnings
    n = len(w.checkpoints["job01"])
    w.run_until(lambda w: len(w.checkpoints["job01"]) > n + 1)  # the deployment's pods are all there: it checkpoints
    assert running(w) and w.status.restarts.count == 0


def test_scale_up_waits_until_the_new_pods_run_and_their_slots_registered() -> None:
    w = started()
    w.update_spec(parallelism=2)
    for _ in range(3):
        w.pods["demo-worker-1-1"].phase = "Pending"  # not running yet
        w.step()
        assert w.count(RescaleJob) == 0
    registered = w._rescale_facts
    w._rescale_facts = lambda: {**registered(), "registered_slots": 1}  # type: ignore[method-assign]
    for _ in range(3):
        w.step()  # running, but the JobMaster does not list the new slot yet
        assert w.count(RescaleJob) == 0
    w._rescale_facts = registered  # type: ignore[method-assign]
    w.run_until(running)
    assert w.count(RescaleJob) == 1 and w.status.parallelism == 2


def test_scale_down_asks_first_then_deletes_the_surplus_workers() -> None:
    w = started(parallelism=3)
    w.update_spec(parallelism=1)
    op = w.status.operation
    assert op is not None and op.kind is OperationKind.RESCALE and op.step is OperationStep.SNAPSHOT
    assert w.count(RescaleJob) == 1 and w.count(DeleteWorkers) == 0, "nothing deleted before the JobMaster let go"
    w.run_until(running)
    assert workers(w) == ["demo-worker-1-0"] and w.status.parallelism == 1
    [delete] = [a for a in w.actions if isinstance(a, DeleteWorkers)]
    assert sorted(delete.names) == ["demo-worker-1-1", "demo-worker-1-2"]
    assert len(w.deployed) == 1 and not w.warnings
    assert any(r == "Rescaled" and "from 3 to 1" in m for r, m in w.events)


def test_a_failed_rescale_falls_back_to_the_full_upgrade() -> None:
    w = started(parallelism=2)
    w.rescale_outcome = RescaleStatus.FAILED
    w.update_spec(parallelism=3)
    w.run_until(lambda w: w.status.operation is not None and w.status.operation.kind is OperationKind.UPGRADE)
    [fallback] = [m for r, m in w.warnings if r == "RescaleFallback"]
    assert "savepoint failed" in fallback and "upgrading instead" in fallback
    w.run_until(running)
    assert w.deployed[-1][3] == 3 and w.deployed[-1][0] == 2, "a new attempt at the new parallelism"


@pytest.mark.parametrize(
    "patch, why",
    [
        ({"parallelism": 2, "image": "app:2"}, None),  # not a SCALE change: an upgrade, no fallback event
        ({"parallelism": 2, "taskSlots": 2}, "taskSlots changed too"),
    ],
)
def test_other_changes_take_the_upgrade_path(patch: dict[str, Any], why: str | None) -> None:
    w = started()
    w.update_spec(**patch)
    op = w.status.operation
    assert op is not None and op.kind is OperationKind.UPGRADE
    fallbacks = [m for r, m in w.warnings if r == "RescaleFallback"]
    assert (why in fallbacks[0]) if why else not fallbacks
    assert w.count(RescaleJob) == 0


def test_an_unreachable_jobmaster_makes_it_an_upgrade_with_the_reason() -> None:
    w = started()
    w.jm_answers = False
    w.update_spec(parallelism=2)
    op = w.status.operation
    assert op is not None and op.kind is OperationKind.UPGRADE
    [fallback] = [m for r, m in w.warnings if r == "RescaleFallback"]
    assert "the JobMaster is unreachable" in fallback and "full upgrade" in fallback
    w.jm_answers = True
    w.run_until(running)
    assert w.deployed[-1][3] == 2


def test_a_jobmaster_that_never_answers_the_rescale_times_out_into_an_upgrade() -> None:
    w = started(parallelism=2)
    # The JobMaster runs but every POST /rescale is lost (refused, or it never arrives).
    w.apply = lambda action, apply=w.apply: None if isinstance(action, RescaleJob) else apply(action)  # type: ignore[method-assign]
    w.update_spec(parallelism=1)
    w.run_until(lambda w: w.status.operation is not None and w.status.operation.kind is OperationKind.UPGRADE, 400)
    assert any("did not take the rescale" in m for r, m in w.warnings if r == "RescaleFallback")


def test_surplus_workers_are_the_ended_ones_first_then_the_newest() -> None:
    def pod(name: str, phase: str = "Running") -> Any:
        return FakePod(name, "worker", 1, "app:1", phase=phase).view()

    pods = [
        pod("demo-worker-1-0"),
        pod("demo-worker-1-1", "Succeeded"),
        pod("demo-worker-1-10"),
        pod("demo-worker-1-2"),
    ]
    assert [p.name for p in surplus_workers(pods, 1)] == ["demo-worker-1-1", "demo-worker-1-2", "demo-worker-1-10"]
    assert [p.name for p in surplus_workers(pods, 3)] == ["demo-worker-1-1"]
    assert surplus_workers(pods[:1], 1) == []


def test_new_worker_names_never_reuse_an_index_in_use() -> None:
    job = JobRef("demo", "ns", "uid")
    names = new_worker_names(job, 4, ["demo-jobmaster-4", "demo-worker-4-0", "demo-worker-4-1-r2"], 2)
    assert names == ["demo-worker-4-2", "demo-worker-4-3"]
    assert new_worker_names(job, 1, [], 1) == ["demo-worker-1-0"]
