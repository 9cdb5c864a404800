"""The controller wired to fakes of Kubernetes, the JobMaster and storage: ordering, conflicts, deletion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamjob.operator import controller
from streamjob.operator.deps import Deps
from streamjob.operator.errors import ConflictError
from streamjob.operator.model import StreamJobStatus
from streamjob.operator.resources.secret import job_rest_token
from streamjob.operator.settings import OperatorConfig
from streamjob.operator.testing import FakeJobMaster, FakeKube, FakeSnapshots, fake_deps
from streamjob.operator.testing import reconcile_rounds as rounds

pytestmark = pytest.mark.unit

OPERATOR_KEY = "k" * 40

SPEC: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c", "s3": {"credentialsSecret": {"name": "creds"}}},
}


def make() -> tuple[Deps, FakeKube, FakeJobMaster, FakeSnapshots]:
    return fake_deps(SPEC, config=OperatorConfig(metrics_port=None, operator_key=OPERATOR_KEY))


def status(kube: FakeKube) -> StreamJobStatus:
    assert kube.job is not None
    return StreamJobStatus.parse(kube.job.get("status"))


def test_reaches_running_and_writes_status_before_creating_pods() -> None:
    deps, kube, _, snaps = make()
    asyncio.run(rounds(deps, kube, 5))
    st = status(kube)
    assert st.lifecycle_state.value == "Running" and st.job_id == "job1"
    first_create = next(i for i, c in enumerate(kube.calls) if c.startswith("create:"))
    assert kube.calls[first_create - 1].startswith("status:")
    created = {c for c in kube.calls if c.startswith("create:")}
    assert {"create:ConfigMap:demo-config-1", "create:Service:demo-rest", "create:Pod:demo-jobmaster-1"} <= created
    assert {"create:Pod:demo-worker-1-0", "create:Pod:demo-worker-1-1"} <= created
    # The operator lists storage with its own credentials: it reads no Secret by default.
    assert snaps.accesses[-1].access_key_id is None and kube.secrets_read == []
    assert ("Deploying" in [e[0] for e in kube.events]) and ("JobRunning" in [e[0] for e in kube.events])


def test_conflicting_status_write_stops_the_round_before_acting() -> None:
    deps, kube, _, _ = make()
    kube.conflict_next = True
    with pytest.raises(ConflictError):
        asyncio.run(controller.reconcile(deps, "ns", "demo"))
    assert not [c for c in kube.calls if c.startswith("create:")]


def test_savepoint_request_id_is_recorded_and_upgrade_restores_it() -> None:
    deps, kube, jm, _snaps = make()
    asyncio.run(rounds(deps, kube, 5))
    assert kube.job is not None
    kube.job["spec"]["parallelism"] = 3
    kube.job["spec"]["image"] = "app:2"  # not parallelism alone: an upgrade, not a rescale in place
    kube.job["metadata"]["generation"] = 2
    asyncio.run(rounds(deps, kube, 12))
    st = status(kube)
    assert st.lifecycle_state.value == "Running" and st.parallelism == 3
    assert st.restore_from == "s3://b/c/ns/demo/savepoint-r1" and st.job_id not in (None, "job1")
    assert len(jm.savepoints) == 1
    assert "create:Pod:demo-worker-2-2" in kube.calls
    # The savepoint call carried the job's REST token, derived from the operator key, not read.
    assert jm.tokens == [job_rest_token(OPERATOR_KEY, controller.job_ref(kube.job))]


def test_a_parallelism_change_rescales_in_place_with_the_token() -> None:
    deps, kube, jm, _snaps = make()
    asyncio.run(rounds(deps, kube, 5))
    assert kube.job is not None and status(kube).lifecycle_state.value == "Running"
    kube.job["spec"]["parallelism"] = 3  # what `kubectl scale sj/demo --replicas=3` writes
    kube.job["metadata"]["generation"] = 2
    asyncio.run(rounds(deps, kube, 8))
    st = status(kube)
    assert st.lifecycle_state.value == "Running" and st.parallelism == 3 and st.attempt == 1
    assert st.deployment is not None and st.deployment.spec["parallelism"] == 3
    assert jm.rescales == [3] and not jm.savepoints, "no stop-with-savepoint through POST /savepoints"
    assert "create:Pod:demo-worker-1-2" in kube.calls and not any("jobmaster-2" in c for c in kube.calls)
    assert jm.tokens == [job_rest_token(OPERATOR_KEY, controller.job_ref(kube.job))]
    assert any(e[0] == "Rescaled" and "from 2 to 3" in e[1] for e in kube.events), kube.events


def test_unknown_status_keys_are_kept() -> None:
    body = controller.status_body({"kopf": {"x": 1}, "lifecycleState": "Running"}, StreamJobStatus())
    assert body["kopf"] == {"x": 1} and body["lifecycleState"] == "Created"


def test_deletion_completes_when_the_final_savepoint_fails() -> None:
    deps, kube, jm, snaps = make()
    assert kube.job is not None
    kube.job["spec"]["savepointOnDeletion"] = True
    kube.job["spec"]["checkpoint"] = {"externalizedCleanup": "DELETE_ON_CANCELLATION"}
    asyncio.run(rounds(deps, kube, 5))
    jm.fail_savepoints = True
    body = asyncio.run(kube.get_streamjob("ns", "demo"))
    assert body is not None
    asyncio.run(controller.finalize(deps, body))
    reasons = [e[0] for e in kube.events]
    assert "SavepointFailed" in reasons and "Deleted" in reasons
    assert not [k for k in kube.objects if k[0] == "Pod"]
    assert jm.cancelled  # cancel honours the cleanup policy in the JobMaster
    assert snaps.discarded == []


def test_deletion_with_dead_jobmaster_cleans_checkpoints_per_policy() -> None:
    deps, kube, _jm, snaps = make()
    assert kube.job is not None
    kube.job["spec"]["checkpoint"] = {"externalizedCleanup": "DELETE_ON_CANCELLATION"}
    asyncio.run(rounds(deps, kube, 5))
    for key in [k for k in kube.objects if k[1].startswith("demo-jobmaster")]:
        del kube.objects[key]
    body = asyncio.run(kube.get_streamjob("ns", "demo"))
    assert body is not None
    asyncio.run(controller.finalize(deps, body))
    assert snaps.discarded == ["job1"]
    assert "CheckpointsDeleted" in [e[0] for e in kube.events]


def test_a_failing_kubernetes_call_is_reported_in_status_and_events() -> None:
    from streamjob.operator.errors import KubernetesError

    deps, kube, _, _ = make()

    async def refuse(obj: dict[str, Any]) -> None:
        raise KubernetesError("create Pod: HTTP 403 forbidden: serviceaccount jobs not found", status=403)

    kube.create = refuse  # type: ignore[method-assign]
    asyncio.run(controller.reconcile(deps, "ns", "demo"))
    with pytest.raises(KubernetesError):
        asyncio.run(controller.reconcile(deps, "ns", "demo"))
    assert "serviceaccount jobs not found" in (status(kube).error or "")
    assert "ActionFailed" in [e[0] for e in kube.events]


def test_a_restart_backoff_ends_on_time_not_on_the_next_busy_tick() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    op = {
        "kind": "restart",
        "step": "wait",
        "startedAt": "2026-01-01T00:00:00.000Z",
        "stepStartedAt": "2026-01-01T00:00:00.000Z",
        "notBefore": "2026-01-01T00:00:00.100Z",
    }
    waiting = StreamJobStatus.parse({"lifecycleState": "Recovering", "operation": op})

    def delay(status: StreamJobStatus, at: datetime) -> float:
        return controller.next_round_in(status, at, busy=True, busy_s=0.25, idle_s=2.0)

    assert delay(waiting, now) == pytest.approx(0.1 + controller.BACKOFF_SLACK_S)
    assert delay(waiting, now + timedelta(seconds=1)) == pytest.approx(controller.BACKOFF_SLACK_S)
    later = StreamJobStatus.parse(
        {"lifecycleState": "Recovering", "operation": {**op, "notBefore": "2026-01-01T00:00:09Z"}}
    )
    assert delay(later, now) == 0.25
    assert controller.next_round_in(StreamJobStatus(), now, busy=False, busy_s=0.25, idle_s=2.0) == 2.0


def test_a_jobmaster_on_a_lost_node_is_force_deleted_and_the_attempt_restarts() -> None:
    """No kubelet confirms a graceful deletion on a dead node: its pods go with grace 0, the others with grace."""
    deps, kube, _, _ = make()
    asyncio.run(rounds(deps, kube, 5))
    assert status(kube).lifecycle_state.value == "Running"
    jm = kube.objects[("Pod", "demo-jobmaster-1")]
    jm.setdefault("spec", {})["nodeName"] = "127.0.0.3"
    jm["status"]["conditions"] = [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "True"}]
    asyncio.run(rounds(deps, kube, 6))
    assert kube.delete_grace["demo-jobmaster-1"] == 0
    assert kube.delete_grace["demo-worker-1-0"] > 0 and kube.delete_grace["demo-worker-1-1"] > 0
    st = status(kube)
    assert st.attempt == 2 and st.restarts.count == 1 and "node 127.0.0.3" in (st.restarts.last_reason or "")
    assert "create:Pod:demo-jobmaster-2" in kube.calls
