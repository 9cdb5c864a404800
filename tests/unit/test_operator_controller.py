"""The controller wired to fakes of Kubernetes, the JobMaster and storage: ordering, conflicts, deletion."""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamjob.operator import controller
from streamjob.operator.checkpoints import StorageAccess
from streamjob.operator.deps import Deps
from streamjob.operator.errors import ConflictError, JobMasterError
from streamjob.operator.metrics import Metrics
from streamjob.operator.model import StreamJobStatus
from streamjob.operator.model.status import SnapshotInfo
from streamjob.operator.reconciler.facts import JobMasterView, SavepointPoll
from streamjob.operator.resources.secret import job_rest_token
from streamjob.operator.settings import OperatorConfig

pytestmark = pytest.mark.unit

OPERATOR_KEY = "k" * 40

SPEC: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c", "s3": {"credentialsSecret": {"name": "creds"}}},
}


class FakeKube:
    def __init__(self) -> None:
        self.job: dict[str, Any] | None = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "1"},
            "spec": copy.deepcopy(SPEC),
        }
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.events: list[tuple[str, str, bool]] = []
        self.conflict_next = False
        self.rv = itertools.count(2)
        self.secrets_read: list[str] = []
        self.status_writes: list[dict[str, Any]] = []

    async def get_streamjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.job)

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        assert self.job is not None
        if self.conflict_next or body["metadata"]["resourceVersion"] != self.job["metadata"]["resourceVersion"]:
            self.conflict_next = False
            raise ConflictError("conflict", status=409)
        self.calls.append("status:" + str(status.get("lifecycleState")))
        self.job["status"] = copy.deepcopy(status)
        self.status_writes.append(copy.deepcopy(status))
        self.job["metadata"]["resourceVersion"] = str(next(self.rv))
        return copy.deepcopy(self.job)

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (kind, _), o in self.objects.items() if kind == "Pod"]

    async def create(self, obj: dict[str, Any]) -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        self.calls.append(f"create:{key[0]}:{key[1]}")
        obj = copy.deepcopy(obj)
        obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        self.objects.setdefault(key, obj)

    async def delete_pods(self, namespace: str, names: list[str], grace_seconds: int) -> None:
        for name in names:
            self.calls.append(f"delete:Pod:{name}")
            self.objects.pop(("Pod", name), None)

    async def delete_configmaps(self, namespace: str, selector: str, keep: set[str]) -> None:
        for key in [k for k in self.objects if k[0] == "ConfigMap" and k[1] not in keep]:
            del self.objects[key]

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        self.secrets_read.append(name)
        return {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}

    async def post_event(self, body: dict[str, Any], *, reason: str, message: str, warning: bool) -> None:
        self.events.append((reason, message, warning))

    def kubelet(self) -> None:
        """Every pending pod starts and gets an IP."""
        ips = itertools.count(2)
        for (kind, _), obj in self.objects.items():
            if kind == "Pod" and obj.get("status", {}).get("phase") != "Running":
                obj["status"] = {
                    "phase": "Running",
                    "podIP": f"10.0.0.{next(ips)}",
                    "containerStatuses": [{"name": "c", "state": {"running": {}}, "restartCount": 0}],
                }


class FakeJobMaster:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.savepoints: dict[str, SavepointPoll] = {}
        self.fail_savepoints = False
        self.cancelled: list[str] = []
        self.tokens: list[str | None] = []

    def _running(self, address: str) -> bool:
        ip = address.split(":")[0]
        return any(o.get("status", {}).get("podIP") == ip for o in self.kube.objects.values())

    async def job(self, address: str) -> JobMasterView:
        return JobMasterView(reachable=self._running(address), state="RUNNING")

    async def trigger_savepoint(self, address: str, *, stop: bool, rest_token: str | None,
                                target: str | None = None) -> str:
        self.tokens.append(rest_token)
        if self.fail_savepoints:
            raise JobMasterError("savepoint refused")
        rid = f"r{len(self.savepoints) + 1}"
        self.savepoints[rid] = SavepointPoll("COMPLETED", location=f"s3://b/c/ns/demo/savepoint-{rid}")
        return rid

    async def savepoint_status(self, address: str, request_id: str) -> SavepointPoll:
        return self.savepoints.get(request_id, SavepointPoll("UNKNOWN"))

    async def trigger_checkpoint(self, address: str, *, rest_token: str | None) -> None:
        return None

    async def cancel(self, address: str, *, rest_token: str | None) -> None:
        self.tokens.append(rest_token)
        self.cancelled.append(address)


class FakeSnapshots:
    def __init__(self) -> None:
        self.latest: dict[str, SnapshotInfo] = {}
        self.accesses: list[StorageAccess] = []
        self.discarded: list[str] = []

    async def latest_retained(self, access: StorageAccess, job_id: str) -> SnapshotInfo | None:
        self.accesses.append(access)
        return self.latest.get(job_id)

    async def savepoint_since(self, access: StorageAccess, since: datetime) -> SnapshotInfo | None:
        return None

    async def discard_lineage(self, access: StorageAccess, job_id: str) -> int:
        self.discarded.append(job_id)
        return 3


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make() -> tuple[Deps, FakeKube, FakeJobMaster, FakeSnapshots]:
    kube = FakeKube()
    jm = FakeJobMaster(kube)
    snaps = FakeSnapshots()
    ids = (f"job{n}" for n in itertools.count(1))
    deps = Deps(
        kube=kube,
        jobmaster=jm,
        snapshots=snaps,
        metrics=Metrics(),
        config=OperatorConfig(metrics_port=None, operator_key=OPERATOR_KEY),
        clock=Clock(),
        new_job_id=lambda: next(ids),
    )
    return deps, kube, jm, snaps


def status(kube: FakeKube) -> StreamJobStatus:
    assert kube.job is not None
    return StreamJobStatus.parse(kube.job.get("status"))


async def rounds(deps: Deps, kube: FakeKube, n: int) -> None:
    for _ in range(n):
        await controller.reconcile(deps, "ns", "demo")
        kube.kubelet()


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
    kube.job["metadata"]["generation"] = 2
    asyncio.run(rounds(deps, kube, 12))
    st = status(kube)
    assert st.lifecycle_state.value == "Running" and st.parallelism == 3
    assert st.restore_from == "s3://b/c/ns/demo/savepoint-r1" and st.job_id not in (None, "job1")
    assert len(jm.savepoints) == 1
    assert "create:Pod:demo-worker-2-2" in kube.calls
    # The savepoint call carried the job's REST token, derived from the operator key, not read.
    assert jm.tokens == [job_rest_token(OPERATOR_KEY, controller.job_ref(kube.job))]


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
    op = {"kind": "restart", "step": "wait", "startedAt": "2026-01-01T00:00:00.000Z",
          "stepStartedAt": "2026-01-01T00:00:00.000Z", "notBefore": "2026-01-01T00:00:00.100Z"}
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
