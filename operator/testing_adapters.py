"""The operator's test kit, part two: fakes of the controller's I/O adapters (Kubernetes, JobMaster, storage).

``FakeKube``, ``FakeJobMaster`` and ``FakeSnapshots`` stand in for the adapters behind ``controller``
(``fake_deps`` wires them; ``reconcile_rounds`` drives the controller against them); ``pod_object``
and ``terminated`` build raw pods as the Kubernetes API returns them. Re-exported by ``testing``,
where tests import them from; importing it pulls in no test framework.
"""

from __future__ import annotations

import copy
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from streamjob.operator import controller
from streamjob.operator.checkpoints import Retained, StorageAccess
from streamjob.operator.deps import Deps
from streamjob.operator.errors import ConflictError, JobMasterError
from streamjob.operator.metrics import Metrics
from streamjob.operator.model.jobmaster import JobMasterView, SavepointPoll
from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo
from streamjob.operator.resources.labels import RETAINED_LABEL
from streamjob.operator.settings import OperatorConfig
from streamjob.worker.protocol.rest import JobState, RescaleStatus, RescaleView
from streamjob.worker.storage.layout import savepoint_dir_name

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- the controller's adapters -------------------------------------------------------------------


class FakeKube:
    """The Kubernetes adapter over dicts: one StreamJob, the objects created, status with resourceVersion."""

    def __init__(self, spec: dict[str, Any]) -> None:
        """A StreamJob ``ns/demo`` with ``spec``."""
        self.job: dict[str, Any] | None = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "1"},
            "spec": copy.deepcopy(spec),
        }
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.events: list[tuple[str, str, bool]] = []
        self.conflict_next = False
        self.rv = itertools.count(2)
        self.secrets_read: list[str] = []
        self.status_writes: list[dict[str, Any]] = []
        self.retained: dict[str, dict[str, Any]] = {}  # pods taken out of the job, kept for their logs
        self.snapshot_crd = True
        self.delete_grace: dict[str, int] = {}  # pod name -> the grace period of its last deletion

    async def get_streamjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """See ``KubeApi``: the one StreamJob, if it has that name."""
        if self.job is None or self.job["metadata"]["name"] != name:
            return None
        return copy.deepcopy(self.job)

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """See ``KubeApi``; a stale resourceVersion (or ``conflict_next``) is a conflict."""
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
        """See ``KubeApi``: the job's pods, or its retained ones for the retained selector."""
        if selector.startswith(RETAINED_LABEL):
            return [copy.deepcopy(o) for o in self.retained.values()]
        return [copy.deepcopy(o) for (kind, _), o in self.objects.items() if kind == "Pod"]

    async def create(self, obj: dict[str, Any]) -> None:
        """See ``KubeApi`` (an existing object is kept, as with AlreadyExists)."""
        key = (obj["kind"], obj["metadata"]["name"])
        self.calls.append(f"create:{key[0]}:{key[1]}")
        obj = copy.deepcopy(obj)
        obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        self.objects.setdefault(key, obj)

    async def delete_pods(self, namespace: str, names: list[str], grace_seconds: int) -> None:
        """See ``KubeApi``."""
        for name in names:
            self.calls.append(f"delete:Pod:{name}")
            self.delete_grace[name] = grace_seconds
            self.objects.pop(("Pod", name), None)
            self.retained.pop(name, None)

    async def delete_configmaps(self, namespace: str, selector: str, keep: set[str]) -> None:
        """See ``KubeApi``."""
        for key in [k for k in self.objects if k[0] == "ConfigMap" and k[1] not in keep]:
            del self.objects[key]

    async def patch_pod_metadata(self, namespace: str, name: str, metadata: dict[str, Any]) -> None:
        """See ``KubeApi``: the pod leaves the job's pods (as a relabelled pod leaves its selector)."""
        self.calls.append(f"patch:Pod:{name}")
        pod = self.objects.pop(("Pod", name), None)
        if pod is not None:
            meta = pod["metadata"]
            for key in ("labels", "annotations"):
                merged = {**(meta.get(key) or {}), **metadata.get(key, {})}
                meta[key] = {k: v for k, v in merged.items() if v is not None}
            self.retained[name] = pod

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """See ``KubeApi``."""
        self.secrets_read.append(name)
        return {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}

    async def post_event(self, body: dict[str, Any], *, reason: str, message: str, warning: bool) -> None:
        """See ``KubeApi``."""
        self.events.append((reason, message, warning))

    async def ping(self) -> None:
        """See ``KubeApi``: always answers."""

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]] | None:
        """See ``KubeApi``: the StreamJobSnapshots created (None with ``snapshot_crd`` False)."""
        if not self.snapshot_crd:
            return None
        return [copy.deepcopy(o) for (kind, _), o in self.objects.items() if kind == "StreamJobSnapshot"]

    async def patch_snapshot(
        self, namespace: str, name: str, status: dict[str, Any], labels: dict[str, str] | None
    ) -> None:
        """See ``KubeApi``."""
        body = self.objects.get(("StreamJobSnapshot", name))
        if body is not None:
            self.calls.append(f"patch:StreamJobSnapshot:{name}:{status.get('state')}")
            body["status"] = {**body.get("status", {}), **status}
            body["metadata"]["labels"] = {**body["metadata"].get("labels", {}), **(labels or {})}

    async def delete_snapshot(self, namespace: str, name: str) -> None:
        """See ``KubeApi``."""
        self.calls.append(f"delete:StreamJobSnapshot:{name}")
        self.objects.pop(("StreamJobSnapshot", name), None)

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
    """The JobMaster REST adapter: answers while a pod with the address's IP exists; savepoints complete."""

    def __init__(self, kube: FakeKube) -> None:
        """JobMasters are the pods of ``kube``."""
        self.kube = kube
        self.savepoints: dict[str, SavepointPoll] = {}
        self.fail_savepoints = False
        self.cancelled: list[str] = []
        self.tokens: list[str | None] = []  # the REST tokens sent with mutating calls
        self.rescales: list[int] = []  # every POST /rescale's parallelism
        self.rescale_view: RescaleView | None = None
        self.parallelism: int | None = None
        self.registered_slots: int | None = None

    def _running(self, address: str) -> bool:
        ip = address.split(":")[0]
        return any(o.get("status", {}).get("podIP") == ip for o in self.kube.objects.values())

    async def job(self, address: str) -> JobMasterView:
        """See ``JobMasterApi``."""
        return JobMasterView(
            reachable=self._running(address),
            state=JobState.RUNNING,
            parallelism=self.parallelism,
            registered_slots=self.registered_slots,
            rescale=self.rescale_view,
        )

    async def trigger_savepoint(
        self, address: str, *, stop: bool, rest_token: str | None, target: str | None = None, key: str | None = None
    ) -> str:
        """See ``JobMasterApi``; refused with ``fail_savepoints``."""
        self.tokens.append(rest_token)
        if self.fail_savepoints:
            raise JobMasterError("savepoint refused")
        rid = f"r{len(self.savepoints) + 1}"
        self.savepoints[rid] = SavepointPoll("COMPLETED", location=f"s3://b/c/ns/demo/{savepoint_dir_name(rid)}")
        return rid

    async def savepoint_status(self, address: str, request_id: str) -> SavepointPoll:
        """See ``JobMasterApi``."""
        return self.savepoints.get(request_id, SavepointPoll("UNKNOWN"))

    async def trigger_checkpoint(self, address: str, *, rest_token: str | None) -> None:
        """See ``JobMasterApi``."""
        return None

    async def cancel(self, address: str, *, rest_token: str | None) -> None:
        """See ``JobMasterApi``."""
        self.tokens.append(rest_token)
        self.cancelled.append(address)

    async def rescale(self, address: str, parallelism: int, *, rest_token: str | None) -> RescaleView:
        """See ``JobMasterApi``: recorded in ``rescales``; the next ``GET /job`` reports it COMPLETED."""
        self.tokens.append(rest_token)
        self.rescales.append(parallelism)
        source = self.parallelism or 0
        view = RescaleView(
            status=RescaleStatus.IN_PROGRESS, source=source, target=parallelism, requested_at=time.time()
        )
        self.rescale_view = view.model_copy(update={"status": RescaleStatus.COMPLETED, "gap_ms": 700})
        self.parallelism = parallelism
        return view


class FakeSnapshots:
    """The storage adapter: ``latest`` and ``skipped`` (corrupt checkpoints) per jobId, set by the test."""

    def __init__(self) -> None:
        """Nothing in storage."""
        self.latest: dict[str, SnapshotInfo] = {}
        self.skipped: dict[str, tuple[CorruptCheckpoint, ...]] = {}
        self.accesses: list[StorageAccess] = []
        self.discarded: list[str] = []
        self.disposed: list[str] = []
        self.extra_lineages: set[str] = set()

    async def retained(self, access: StorageAccess, job_id: str) -> Retained:
        """See ``SnapshotFinder``."""
        self.accesses.append(access)
        return Retained(self.latest.get(job_id), self.skipped.get(job_id, ()))

    async def savepoint_since(self, access: StorageAccess, since: datetime) -> SnapshotInfo | None:
        """See ``SnapshotFinder``."""
        return None

    async def discard_lineage(self, access: StorageAccess, job_id: str) -> int:
        """See ``SnapshotFinder``."""
        self.discarded.append(job_id)
        return 3

    async def lineages(self, access: StorageAccess) -> tuple[str, ...]:
        """See ``SnapshotFinder``: the jobIds with a latest snapshot, and ``extra_lineages``."""
        return tuple(sorted(set(self.latest) | self.extra_lineages))

    async def dispose(self, access: StorageAccess, location: str) -> int:
        """See ``SnapshotFinder``."""
        self.disposed.append(location)
        return 2


class Clock:
    """A clock that advances 1 s per reading."""

    def __init__(self) -> None:
        """Starts one second after ``T0``."""
        self.now = T0 + timedelta(seconds=1)

    def __call__(self) -> datetime:
        """The next second."""
        self.now += timedelta(seconds=1)
        return self.now


def fake_deps(
    spec: dict[str, Any], config: OperatorConfig | None = None
) -> tuple[Deps, FakeKube, FakeJobMaster, FakeSnapshots]:
    """Deps over the fakes, for one StreamJob ``ns/demo`` with ``spec``; jobIds are job1, job2, ..."""
    kube = FakeKube(spec)
    jm = FakeJobMaster(kube)
    snaps = FakeSnapshots()
    ids = (f"job{n}" for n in itertools.count(1))
    deps = Deps(
        kube=kube,
        jobmaster=jm,
        snapshots=snaps,
        metrics=Metrics(),
        config=config or OperatorConfig(metrics_port=None),
        clock=Clock(),
        new_job_id=lambda: next(ids),
    )
    return deps, kube, jm, snaps


async def reconcile_rounds(deps: Deps, kube: FakeKube, n: int) -> None:
    """``n`` reconciliations of ``ns/demo``, each followed by a kubelet tick of the fake cluster."""
    for _ in range(n):
        await controller.reconcile(deps, "ns", "demo")
        kube.kubelet()


def terminated(code: int, reason: str, message: str, finished_at: str = "2026-01-01T11:59:59Z") -> dict[str, Any]:
    """A container state ``terminated`` (``message``: the termination message or the log tail)."""
    return {"terminated": {"exitCode": code, "reason": reason, "message": message, "finishedAt": finished_at}}


def pod_object(
    component: str,
    phase: str = "Running",
    *,
    name: str | None = None,
    attempt: int = 1,
    containers: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A pod as the API returns it: labelled as ``component`` of ``attempt``, created 2026-01-01T11:59:00Z.

    ``containers``: container statuses (``{"name": ..., "state": {...}}``); ``status``: more status fields.
    """
    return {
        "metadata": {
            "name": name or f"j-{component}-{attempt}",
            "creationTimestamp": "2026-01-01T11:59:00Z",
            "labels": {"app.kubernetes.io/component": component, "streamjob.dev/attempt": str(attempt)},
        },
        "status": {"phase": phase, "containerStatuses": containers or [], **status},
    }
