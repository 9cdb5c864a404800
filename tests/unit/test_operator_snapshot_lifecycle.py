"""StreamJobSnapshot resources through the planner, round by round in a fake world, and their disposal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamjob.operator import snapshot_disposal
from streamjob.operator.model import LifecycleState
from streamjob.operator.reconciler.facts import CreateSnapshot, DeleteSnapshot, DeployAttempt
from streamjob.operator.settings import OperatorConfig
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import fake_deps, reconcile_rounds

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
}


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def started(**spec: Any) -> World:
    w = World({**BASE, **spec})
    w.snapshot_bodies = {}
    w.run_until(lambda w: running(w) and w.status.deployment is not None and w.status.deployment.stable)
    return w


def states(w: World) -> dict[str, str | None]:
    return {name: w.snapshot_state(name) for name in w.snapshot_bodies or {}}


def test_a_nonce_savepoint_is_recorded_as_a_completed_snapshot_with_labels() -> None:
    w = started()
    w.update_spec(savepointTriggerNonce=1)
    created = [a for a in w.actions if isinstance(a, CreateSnapshot)]
    assert len(created) == 1
    name = created[0].body["metadata"]["name"]
    assert name.startswith("demo-manual-") and w.status.snapshot_request is not None
    assert w.status.snapshot_request.snapshot == name  # named write-ahead, before it is created
    assert w.snapshot_state(name) == "IN_PROGRESS"
    w.run_until(lambda w: w.snapshot_state(name) == "COMPLETED")
    assert w.snapshot_bodies is not None
    body = w.snapshot_bodies[name]
    assert body["status"]["path"] == w.status.last_savepoint.location if w.status.last_savepoint else False
    assert body["metadata"]["labels"] == {
        "streamjob.dev/job": "demo",
        "streamjob.dev/snapshot-type": "savepoint",
        "streamjob.dev/trigger": "manual",
        "app.kubernetes.io/managed-by": "streamjob-operator",
    }
    assert body["status"]["storage"]["checkpointsUri"] == "s3://b/c"


def test_a_user_snapshot_is_labelled_triggered_and_completed() -> None:
    w = started()
    w.add_snapshot("mine")
    w.step()
    assert w.snapshot_state("mine") == "TRIGGER_PENDING"
    assert w.snapshot_bodies is not None
    assert w.snapshot_bodies["mine"]["metadata"]["labels"]["streamjob.dev/trigger"] == "user"
    w.run_until(lambda w: w.snapshot_state("mine") == "COMPLETED")
    status = w.snapshot_bodies["mine"]["status"]
    assert status["path"].startswith("s3://b/c/ns/demo/savepoint-") and status["jobId"] == w.status.job_id
    assert not [a for a in w.actions if isinstance(a, CreateSnapshot)]  # the user's resource, not a new one


def test_a_user_checkpoint_snapshot_completes_with_the_new_checkpoint() -> None:
    w = started()
    w.checkpointing = False
    latest = w.latest(w.status.job_id or "")
    before = latest.id if latest is not None else 0  # only the requested checkpoint completes
    w.add_snapshot("cp", type="checkpoint")
    w.run_until(lambda w: w.snapshot_state("cp") == "COMPLETED")
    assert w.snapshot_bodies is not None
    assert w.snapshot_bodies["cp"]["status"]["path"].endswith(f"/chk-{(before or 0) + 1}")


def test_a_failing_trigger_is_retried_within_backoff_limit_then_failed() -> None:
    w = started()
    w.savepoint_outcome = "FAILED"
    w.add_snapshot("mine", backoffLimit=1)
    w.run_until(lambda w: w.snapshot_state("mine") == "FAILED")
    assert w.snapshot_bodies is not None
    status = w.snapshot_bodies["mine"]["status"]
    assert status["failures"] == 2 and "task not running" in status["error"]
    assert len(w.requests) == 2  # the first try and one retry


def test_a_pending_snapshot_is_abandoned_when_the_job_is_suspended() -> None:
    w = started()
    w.jm_answers = False  # not healthy: the snapshot waits
    w.add_snapshot("mine")
    w.step()
    assert w.snapshot_state("mine") == "TRIGGER_PENDING"
    w.jm_answers = True
    w.spec = {**w.spec, "state": "suspended", "upgradeMode": "last-state"}
    w.generation += 1
    w.run_until(lambda w: w.snapshot_state("mine") == "ABANDONED")
    assert w.status.lifecycle_state is LifecycleState.SUSPENDED
    assert any(r == "SnapshotAbandoned" for r, _ in w.warnings)


def test_an_upgrade_savepoint_is_recorded_with_its_trigger() -> None:
    w = started()
    w.update_spec(image="app:2")
    w.run_until(
        lambda w: running(w) and w.status.deployment is not None and w.status.deployment.spec["image"] == "app:2"
    )
    assert w.snapshot_bodies is not None
    upgrade = [b for b in w.snapshot_bodies.values() if b["metadata"]["labels"]["streamjob.dev/trigger"] == "upgrade"]
    assert len(upgrade) == 1 and upgrade[0]["status"]["state"] == "COMPLETED"
    assert upgrade[0]["status"]["path"] == w.status.deployment.restore_from


def test_periodic_savepoints_stay_bounded_by_retention() -> None:
    w = started(savepoints={"interval": "5s", "maxCount": 2})
    for _ in range(80):
        w.step()
        assert w.snapshot_bodies is not None
        ours = [b for b in w.snapshot_bodies.values() if b.get("status", {}).get("state") == "COMPLETED"]
        assert len(ours) <= 3  # maxCount, plus the one completed this round until the next round expires it
    periodic = [a for a in w.actions if isinstance(a, CreateSnapshot)]
    assert len(periodic) >= 10  # many were taken...
    assert w.count(DeleteSnapshot) >= len(periodic) - 3  # ...and all but the newest deleted
    paths = {b["status"]["path"] for b in (w.snapshot_bodies or {}).values()}
    assert {s.location for s in w.status.savepoint_history} <= paths  # no deleted savepoint listed in status
    completed = sorted(
        (b for b in (w.snapshot_bodies or {}).values() if b["status"]["state"] == "COMPLETED"),
        key=lambda b: b["status"]["resultTimestamp"],
    )
    assert 2 <= len(completed) <= 3  # the newest two (and one just completed, expired next round)
    assert [b["metadata"]["name"] for b in completed] == [a.body["metadata"]["name"] for a in periodic][
        -len(completed) :
    ]


def test_restore_by_snapshot_name_waits_for_it_then_deploys_from_its_path() -> None:
    w = World({**BASE, "restoreFrom": {"snapshotName": "golden"}})
    w.snapshot_bodies = {}
    for _ in range(3):
        w.step()
    assert w.count(DeployAttempt) == 0
    assert w.status.error is not None and "no StreamJobSnapshot 'golden'" in w.status.error
    w.snapshot_bodies["golden"] = {
        "metadata": {"name": "golden"},
        "spec": {"jobReference": {"name": "other-job"}},
        "status": {"state": "COMPLETED", "path": "s3://b/c/ns/other-job/savepoint-g"},
    }
    w.run_until(running)
    assert w.deployed[0][2] == "s3://b/c/ns/other-job/savepoint-g"
    assert w.status.error is None


def test_restore_by_name_of_a_failed_snapshot_is_refused() -> None:
    w = World({**BASE, "restoreFrom": {"snapshotName": "bad"}})
    w.snapshot_bodies = {
        "bad": {"metadata": {"name": "bad"}, "spec": {"jobReference": {"name": "demo"}}, "status": {"state": "FAILED"}}
    }
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.FAILED)
    assert w.count(DeployAttempt) == 0 and "StreamJobSnapshot bad is FAILED" in (w.status.error or "")


def test_without_the_snapshot_crd_nothing_changes() -> None:
    w = World(dict(BASE))
    w.run_until(running)
    w.update_spec(savepointTriggerNonce=1)
    w.run_until(lambda w: w.status.snapshot_request is None and w.status.last_savepoint is not None)
    assert not [a for a in w.actions if isinstance(a, CreateSnapshot)]


# -- the controller's side: old lineages and disposal --------------------------------------------

SNAP_SPEC = {**BASE, "storage": {"checkpointsUri": "s3://b/c", "savepointsUri": "s3://b/sp"}}
CONFIG = OperatorConfig(metrics_port=None, operator_key="k" * 32)


def test_old_lineages_are_deleted_once_the_current_one_has_a_checkpoint() -> None:
    from streamjob.operator.model.status import SnapshotInfo

    deps, kube, _, snaps = fake_deps(SNAP_SPEC, CONFIG)
    old = "0" * 31 + "1"

    async def run() -> None:
        await reconcile_rounds(deps, kube, 8)
        assert kube.job is not None
        job_id = kube.job["status"]["jobId"]
        snaps.extra_lineages = {old, "savepoint-x"}
        snaps.latest[job_id] = SnapshotInfo(kind="checkpoint", location=f"s3://b/c/ns/demo/{job_id}/chk-1", id=1)
        await reconcile_rounds(deps, kube, 14)
        assert kube.job["status"]["deployment"]["stable"]
        assert snaps.discarded == [old] and kube.job["status"]["lineagesCleaned"] == job_id

    asyncio.run(run())


def _snapshot_body(path: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "streamjob.dev/v1alpha1",
        "kind": "StreamJobSnapshot",
        "metadata": {"name": "s1", "namespace": "ns"},
        "spec": {"jobReference": {"name": "demo"}, **spec},
        "status": {"state": "COMPLETED", "path": path},
    }


def test_disposal_deletes_files_under_the_jobs_storage_only() -> None:
    deps, kube, _, snaps = fake_deps(SNAP_SPEC, CONFIG)
    done = asyncio.run(snapshot_disposal.dispose(deps, _snapshot_body("s3://b/sp/ns/demo/savepoint-a")))
    assert snaps.disposed == ["s3://b/sp/ns/demo/savepoint-a"] and "deleted 2 files" in done
    kept = asyncio.run(snapshot_disposal.dispose(deps, _snapshot_body("s3://b/sp/ns/payroll/savepoint-a")))
    assert snaps.disposed == ["s3://b/sp/ns/demo/savepoint-a"] and "kept" in kept
    assert any(reason == "FilesKept" and warning for reason, _, warning in kube.events)
    asyncio.run(snapshot_disposal.dispose(deps, _snapshot_body("s3://b/sp/ns/demo/savepoint-b", disposeOnDelete=False)))
    assert len(snaps.disposed) == 1


def test_disposal_of_a_restore_point_in_use_is_refused_with_the_reason() -> None:
    deps, kube, _, snaps = fake_deps(SNAP_SPEC, CONFIG)
    path = "s3://b/sp/ns/demo/savepoint-a"
    assert kube.job is not None
    kube.job["status"] = {"lifecycleState": "Suspended", "jobId": "j", "restoreFrom": path}
    kube.objects[("StreamJobSnapshot", "s1")] = _snapshot_body(path)
    with pytest.raises(snapshot_disposal.SnapshotInUse, match="restore point of StreamJob demo"):
        asyncio.run(snapshot_disposal.dispose(deps, _snapshot_body(path)))
    assert snaps.disposed == []
    assert "restore point" in kube.objects[("StreamJobSnapshot", "s1")]["status"]["error"]
    assert [r for r, _, w in kube.events if w] == ["DisposalRefused"]
    kube.job = None  # the job is gone: the storage recorded in the snapshot's status is used
    body = _snapshot_body(path)
    body["status"]["storage"] = {"checkpointsUri": "s3://b/c", "savepointsUri": "s3://b/sp"}
    asyncio.run(snapshot_disposal.dispose(deps, body))
    assert snaps.disposed == [path]


def test_job_deletion_abandons_its_pending_snapshots() -> None:
    from streamjob.operator import controller

    deps, kube, _, _ = fake_deps(SNAP_SPEC, CONFIG)
    kube.objects[("StreamJobSnapshot", "s1")] = {
        "metadata": {"name": "s1"},
        "spec": {"jobReference": {"name": "demo"}},
        "status": {"state": "TRIGGER_PENDING"},
    }

    async def run() -> None:
        await reconcile_rounds(deps, kube, 3)
        assert kube.job is not None
        await controller.finalize(deps, kube.job)

    asyncio.run(run())
    status = kube.objects[("StreamJobSnapshot", "s1")]["status"]
    assert status["state"] == "ABANDONED" and "deleted" in status["error"]


def test_a_snapshot_naming_no_streamjob_says_so_once() -> None:
    deps, kube, _, _ = fake_deps(SNAP_SPEC, CONFIG)
    body = {"metadata": {"name": "s1", "namespace": "ns"}, "spec": {"jobReference": {"name": "nope"}}}
    kube.objects[("StreamJobSnapshot", "s1")] = body
    assert asyncio.run(snapshot_disposal.report_orphan(deps, body))
    error = kube.objects[("StreamJobSnapshot", "s1")]["status"]["error"]
    assert error.startswith("spec.jobReference.name: no StreamJob 'nope' in namespace ns")
    assert not asyncio.run(snapshot_disposal.report_orphan(deps, kube.objects[("StreamJobSnapshot", "s1")]))
    mine = {"metadata": {"name": "s2", "namespace": "ns"}, "spec": {"jobReference": {"name": "demo"}}}
    assert not asyncio.run(snapshot_disposal.report_orphan(deps, mine))  # its job exists: its rounds take it up


def test_the_deletion_savepoint_outlives_the_job_as_a_completed_snapshot() -> None:
    from streamjob.operator import controller

    deps, kube, _, _ = fake_deps({**SNAP_SPEC, "savepointOnDeletion": True}, CONFIG)

    async def run() -> None:
        await reconcile_rounds(deps, kube, 8)
        assert kube.job is not None and kube.job["status"]["lifecycleState"] == "Running"
        await controller.finalize(deps, kube.job)

    asyncio.run(run())
    (body,) = [o for (kind, _), o in kube.objects.items() if kind == "StreamJobSnapshot"]
    assert body["metadata"]["labels"]["streamjob.dev/trigger"] == "deletion"
    assert body["status"]["state"] == "COMPLETED" and body["status"]["path"].startswith("s3://b/c/ns/demo/savepoint-")
    assert body["status"]["storage"]["savepointsUri"] == "s3://b/sp"
