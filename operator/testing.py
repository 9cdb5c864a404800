"""The operator's test kit: a fake world for the pure planner and fakes of the controller's adapters.

``PlannerWorld`` drives ``reconciler.plan`` round by round against pods that start after a tick, a
JobMaster that answers while its pod runs, savepoints that complete / fail / hang (and triggers whose
answers are lost, ``lost_answers``; request keys honoured or not), and checkpoint and savepoint
storage the job writes to — no mocks, only the facts the observers would return; with
``snapshot_bodies`` set it also holds the job's StreamJobSnapshots. ``FakeKube``, ``FakeJobMaster``,
``FakeSnapshots``, ``fake_deps``, ``reconcile_rounds``, ``pod_object`` and ``terminated`` (the fakes
of the controller's adapters) live in ``testing_adapters`` and are re-exported here. Used by
``tests/unit/test_operator_plan*.py``, ``test_operator_controller.py``, ``test_operator_security.py``,
``test_operator_pods_observer.py`` and ``test_operator_final_failures.py``; importing it pulls in no
test framework.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from streamjob.operator.model.jobmaster import JobMasterView, SavepointPoll
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import CorruptCheckpoint, LifecycleState, SnapshotInfo, StreamJobStatus
from streamjob.operator.observer.facts import Facts, RetainedPod
from streamjob.operator.observer.pods import PodView
from streamjob.operator.observer.snapshots import view_snapshot
from streamjob.operator.reconciler.facts import (
    Action,
    CreateSnapshot,
    DeletePods,
    DeleteRetained,
    DeleteSnapshot,
    DeleteWorkers,
    DeployAttempt,
    DeployWorkers,
    DiscardLineages,
    PatchSnapshot,
    Plan,
    ReplaceWorkers,
    RescaleJob,
    SnapshotAction,
    TriggerCheckpoint,
    TriggerSavepoint,
)
from streamjob.operator.reconciler.plan import plan
from streamjob.operator.resources.labels import JobRef
from streamjob.operator.testing_adapters import (
    T0,
    Clock,
    FakeJobMaster,
    FakeKube,
    FakeSnapshots,
    fake_deps,
    pod_object,
    reconcile_rounds,
    terminated,
)
from streamjob.operator.timeutil import format_time, parse_time
from streamjob.operator.validation import parse_spec, validate
from streamjob.worker.protocol.rest import FailureDetail, JobState, RescaleStatus, RescaleView
from streamjob.worker.storage.layout import is_savepoint_location, savepoint_dir_name


def planner_spec(**changes: Any) -> dict[str, Any]:
    """The planner tests' usual StreamJob spec, a fresh copy each call, with ``changes`` set on top."""
    return {
        "image": "app:1",
        "entrypoint": "examples.balance:build",
        "parallelism": 2,
        "storage": {"checkpointsUri": "s3://b/c"},
        "checkpoint": {"intervalMs": 1000},
        "restartPolicy": {"maxRestarts": 3, "backoff": {"initialDelaySeconds": 1, "maxDelaySeconds": 4}},
        **changes,
    }


#: The planner's input as a function, so that a test can run another planner (e.g. an older one).
Planner = Callable[[Facts], Plan]


@dataclass
class FakePod:
    """A pod of the fake world: Pending until the next tick, then Running (or failing to start)."""

    name: str
    component: str
    attempt: int
    image: str
    phase: str = "Pending"
    ip: str | None = None
    failure: str | None = None
    finished_at: datetime | None = None
    removed_in: int | None = None  # with slow deletion: ticks until the object is gone
    fails_on_start: str | None = None  # the failure its process will have once it runs
    fails_final: bool = False  # ... marked final in its termination message (no restart can mend it)
    final: bool = False  # its termination message marks the failure final
    lost: bool = False  # its node stopped reporting (``PlannerWorld.lose_node``): gone only when force-deleted

    def view(self) -> PodView:
        """What the pod observer would report."""
        return PodView(
            name=self.name,
            component=self.component,
            attempt=self.attempt,
            phase=self.phase,
            ip=self.ip,
            running=self.phase == "Running" and self.failure is None,
            failure=self.failure,
            succeeded=self.phase == "Succeeded",
            finished_at=self.finished_at,
            final=self.final,
            lost=self.lost,
        )


@dataclass(frozen=True)
class Deployed:
    """One attempt the planner deployed, as the world saw it."""

    attempt: int
    job_id: str
    restore_from: str | None
    parallelism: int
    at: datetime
    operation: str | None  # kind of the operation in status when it was deployed
    operation_started_at: str | None = None


class PlannerWorld:
    """Pods that start after a tick, a JobMaster answering while its pod runs, storage with checkpoints.

    ``step`` runs one round of ``planner`` (``plan`` by default) on the world's facts, writes the
    status back, carries out the actions the way the cluster would, and advances the clock by 1 s.
    Savepoints in ``unrestorable`` make a JobMaster restoring them fail unless the deployed spec
    allows non-restored state (a pipeline that dropped an operator); the JobMaster of an image in
    ``unloadable_images`` fails final (its termination message's marker: no restart can mend it).
    """

    def __init__(self, spec: dict[str, Any], planner: Planner = plan) -> None:
        """A world where ``spec`` was just applied (generation 1, empty status)."""
        self.planner = planner
        self.job = JobRef("demo", "ns", "uid")
        self.spec = spec
        self.generation = 1
        self.status = StreamJobStatus()
        self.now = T0
        self.pods: dict[str, FakePod] = {}
        self.checkpoints: dict[str, list[int]] = {}
        self.corrupt: dict[str, set[int]] = {}  # checkpoints whose _metadata discovery refuses (skipped)
        self.checkpoint_times: dict[tuple[str, int], datetime] = {}
        self.started_from: dict[str, str] = {}
        self.requests: dict[str, SavepointPoll] = {}
        self.stop_requests: dict[str, bool] = {}  # savepoint request id -> stop-with-savepoint
        self.request_attempt: dict[str, int] = {}  # the attempt whose JobMaster takes it
        self.savepoints: dict[str, datetime] = {}  # completed stop/intermediate savepoints by location
        self.savepoint_outcome = "COMPLETED"
        self.lost_answers = 0  # the next n ``POST /savepoints`` reach the JobMaster; their answers time out
        self.jm_request_keys = True  # the JobMaster honours request keys (False: a JobMaster of an older version)
        self.request_keys: dict[str, str] = {}  # request key -> savepoint request id (the JobMaster's)
        self.broken_images: set[str] = set()
        self.unrestorable: set[str] = set()
        self.unloadable_images: set[str] = set()  # the JobMaster of such an image fails final on start
        self.checkpointing = True
        self.checkpoints_on_request = True  # a TriggerCheckpoint completes one (False: requested ones never do)
        self.ids = (f"job{n:02d}" for n in itertools.count(1))
        self.next_id = next(self.ids)
        self.events: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self.actions: list[Action] = []
        self.deployed: list[tuple[int, str, str | None, int]] = []
        self.deployments: list[Deployed] = []
        self.ip_pool = itertools.count(10)
        self.jm_state: JobState = JobState.RUNNING
        self.jm_answers = True
        self.jm_detail: FailureDetail | None = None  # the JobMaster's failure_detail while it answers
        self.retained: dict[str, RetainedPod] = {}  # pods of failed attempts kept for their logs
        self.pod_retention_s = 3600.0
        self.slow_deletion = False  # deleted pods' objects stay for four ticks (kubelet and API server)
        self.snapshot_bodies: dict[str, dict[str, Any]] | None = None  # StreamJobSnapshots (None: no CRD)
        self.lineages_in_storage: set[str] = set()  # jobIds listed under the job's checkpoint root
        self.jm_rescale: RescaleView | None = None  # GET /job's rescale: POST /rescale settles it in a tick
        self.jm_parallelism: int | None = None  # after a rescale in place (else the deployed spec's)
        self.rescale_outcome: RescaleStatus = RescaleStatus.COMPLETED
        self.jm_registers = True  # the JobMaster reports registered slots (running workers × task slots)

    # -- facts -----------------------------------------------------------------------------------
    def latest(self, job_id: str) -> SnapshotInfo | None:
        """What ``search_latest_retained`` would return for ``job_id`` (corrupt checkpoints are skipped)."""
        ids = [i for i in self.checkpoints.get(job_id, []) if i not in self.corrupt.get(job_id, set())]
        if ids:
            return SnapshotInfo(
                kind="checkpoint",
                id=ids[-1],
                job_id=job_id,
                location=self.checkpoint_location(job_id, ids[-1]),
                time=format_time(self.checkpoint_times[(job_id, ids[-1])]),
            )
        if job_id in self.started_from:
            return SnapshotInfo(kind="savepoint", location=self.started_from[job_id], job_id=job_id)
        return None

    def skipped(self, job_id: str) -> tuple[CorruptCheckpoint, ...]:
        """The corrupt checkpoints newer than ``latest(job_id)``, newest first, as discovery reports them."""
        ids = self.checkpoints.get(job_id, [])
        bad = self.corrupt.get(job_id, set())
        good = [i for i in ids if i not in bad]
        newer = sorted((i for i in bad if i in ids and (not good or i > good[-1])), reverse=True)
        location = self.checkpoint_location
        return tuple(
            CorruptCheckpoint(location=location(job_id, i), id=i, job_id=job_id, reason="invalid JSON") for i in newer
        )

    @staticmethod
    def checkpoint_location(job_id: str, checkpoint_id: int) -> str:
        """Where checkpoint ``checkpoint_id`` of ``job_id`` lives."""
        return f"s3://b/c/ns/demo/{job_id}/chk-{checkpoint_id}"

    def facts(self) -> Facts:
        """The facts the observers would gather now."""
        spec, errors = parse_spec(self.spec)
        if spec is not None:
            errors = validate(spec, name=self.job.name, namespace=self.job.namespace)
        dep = self.status.deployment
        jm = next(
            (p for p in self.pods.values() if dep and p.attempt == dep.attempt and p.component == "jobmaster"), None
        )
        reachable = jm is not None and jm.phase == "Running" and jm.failure is None and self.jm_answers
        req = self.status.snapshot_request
        poll = self.requests.get(req.request_id) if req is not None and req.request_id else None
        recent = None
        if req is not None and req.kind == "savepoint" and req.stop and (poll is None or poll.status != "COMPLETED"):
            recent = self.savepoint_since(parse_time(req.started_at))
        ids = {self.status.job_id, self.status.operation.job_id if self.status.operation else None}
        return Facts(
            job=self.job,
            generation=self.generation,
            spec=spec,
            spec_errors=tuple(errors),
            status=self.status,
            now=self.now,
            new_job_id=self.next_id,
            pods=tuple(p.view() for p in self.pods.values()),
            jobmaster=JobMasterView(
                reachable=reachable,
                state=self.jm_state if reachable else None,
                detail=self.jm_detail if reachable else None,
                **(self._rescale_facts() if reachable and dep is not None else {}),
            ),
            savepoint_poll=poll,
            latest={i: self.latest(i) for i in ids if i is not None},
            skipped={i: self.skipped(i) for i in ids if i is not None},
            retained=tuple(self.retained.values()),
            pod_retention_s=self.pod_retention_s,
            recent_savepoint=recent,
            **self._snapshot_facts(spec),
        )

    def savepoint_since(self, since: datetime | None) -> SnapshotInfo | None:
        """What ``savepoint_since`` finds in storage: the newest savepoint completed since ``since`` (less 2 s)."""
        if since is None:
            return None
        found = [(at, loc) for loc, at in self.savepoints.items() if at >= since - timedelta(seconds=2)]
        if not found:
            return None
        at, location = max(found)
        return SnapshotInfo(kind="savepoint", location=location, time=format_time(at))

    def _rescale_facts(self) -> dict[str, Any]:
        """``GET /job``'s parallelism, registered slots and rescale of the deployed attempt's JobMaster."""
        dep = self.status.deployment
        assert dep is not None
        spec = StreamJobSpec.parse(dep.spec)
        workers = [p for p in self.pods.values() if p.attempt == dep.attempt and p.component == "worker"]
        running = sum(1 for p in workers if p.phase == "Running" and p.failure is None)
        parallelism = self.jm_parallelism or spec.parallelism
        registered = running * spec.task_slots if self.jm_registers else None
        return {
            "parallelism": parallelism,
            "registered_slots": registered,
            "spare_slots": max(0, registered - parallelism) if registered is not None else None,
            "rescale": self.jm_rescale,
        }

    def _rescale(self, action: RescaleJob) -> None:
        """``POST /rescale``: IN_PROGRESS now, settled (``rescale_outcome``) in the next tick."""
        source = self.jm_parallelism or StreamJobSpec.parse(self.status.deployment.spec).parallelism  # type: ignore[union-attr]
        if self.jm_rescale is not None and self.jm_rescale.status is RescaleStatus.IN_PROGRESS:
            return  # a 409: one at a time
        self.jm_rescale = RescaleView(
            status=RescaleStatus.IN_PROGRESS,
            source=source,
            target=action.parallelism,
            requested_at=self.now.timestamp(),
        )

    def _settle_rescale(self) -> None:
        view, dep = self.jm_rescale, self.status.deployment
        if view is None or view.status is not RescaleStatus.IN_PROGRESS or dep is None:
            return
        if self.rescale_outcome is not RescaleStatus.COMPLETED:
            self.jm_rescale = view.model_copy(update={"status": self.rescale_outcome, "reason": "savepoint failed"})
            return
        self.jm_rescale = view.model_copy(
            update={"status": RescaleStatus.COMPLETED, "savepoint": "s3://b/c/ns/demo/savepoint-rescale", "gap_ms": 900}
        )
        self.jm_parallelism = view.target
        spec = StreamJobSpec.parse(dep.spec)
        workers = sorted(n for n, p in self.pods.items() if p.attempt == dep.attempt and p.component == "worker")
        keep = -(-view.target // spec.task_slots) + spec.standby_workers  # the spares stay spares
        for name in workers[keep:]:  # the JobMaster let their slots go: they exit 0
            self.pods[name].phase = "Succeeded"

    def _snapshot_facts(self, spec: StreamJobSpec | None) -> dict[str, Any]:
        if self.snapshot_bodies is None:
            return {}
        views = [view_snapshot(b) for b in self.snapshot_bodies.values()]
        wanted = spec.restore_from.snapshot_name if spec is not None and spec.restore_from else None
        return {
            "snapshots": tuple(v for v in views if v.job == self.job.name),
            "snapshots_listed": True,
            "restore_snapshot": next((v for v in views if v.name == wanted), None),
            "lineages": tuple(sorted(self.lineages_in_storage | set(self.checkpoints))),
        }

    def add_snapshot(self, name: str, **spec: Any) -> None:
        """A user creates a StreamJobSnapshot of the job (``spec`` beyond jobReference)."""
        assert self.snapshot_bodies is not None
        body = {"jobReference": {"name": self.job.name}, **spec}
        self.snapshot_bodies[name] = {
            "metadata": {"name": name, "creationTimestamp": format_time(self.now)},
            "spec": body,
        }

    def snapshot_state(self, name: str) -> str | None:
        """The state a snapshot's status shows (None: gone or never seen)."""
        body = (self.snapshot_bodies or {}).get(name)
        return None if body is None else (body.get("status") or {}).get("state")

    def _apply_snapshot(self, action: SnapshotAction) -> None:
        bodies = self.snapshot_bodies
        assert bodies is not None
        if isinstance(action, CreateSnapshot):
            name = action.body["metadata"]["name"]
            body = bodies.setdefault(name, copy.deepcopy(action.body))
            body["metadata"].setdefault("creationTimestamp", format_time(self.now))
            body["status"] = copy.deepcopy(action.status)
        elif isinstance(action, PatchSnapshot) and action.name in bodies:
            body = bodies[action.name]
            body["status"] = {k: v for k, v in action.status.items() if v is not None}
            body["metadata"]["labels"] = {**body["metadata"].get("labels", {}), **(action.labels or {})}
        elif isinstance(action, DeleteSnapshot):
            bodies.pop(action.name, None)
        elif isinstance(action, DiscardLineages):
            for job_id in action.job_ids:
                self.lineages_in_storage.discard(job_id)
                self.checkpoints.pop(job_id, None)

    # -- one round -------------------------------------------------------------------------------
    def step(self) -> Plan:
        """One reconcile round, its actions, then one tick of the clock."""
        result = self.planner(self.facts())
        self.status = result.status
        if self.status.job_id == self.next_id or (
            self.status.operation and self.status.operation.job_id == self.next_id
        ):
            self.next_id = next(self.ids)
        self.events += [(e.reason, e.message) for e in result.events]
        self.warnings += [(e.reason, e.message) for e in result.events if e.warning]
        for action in result.actions:
            self.actions.append(action)
            self.apply(action)
        self.tick()
        return result

    def apply(self, action: Action) -> None:
        """Carries out one action as the cluster and the JobMaster would."""
        if isinstance(action, DeployAttempt):
            self._deploy(action)
        elif isinstance(action, DeployWorkers):
            for i in range(action.attempt.spec.worker_pods):
                name = f"demo-worker-{action.attempt.attempt}-{i}"
                self.pods.setdefault(name, FakePod(name, "worker", action.attempt.attempt, action.attempt.spec.image))
        elif isinstance(action, ReplaceWorkers):
            at = action.attempt
            for name in action.delete:  # detached from the job, then deleted: no round sees them again
                self.pods.pop(name, None)
            for name in action.create:
                self.pods.setdefault(name, FakePod(name, "worker", at.attempt, at.spec.image))
        elif isinstance(action, DeletePods):
            until = parse_time(action.retain_until)
            for name, pod in list(self.pods.items()):
                if until is not None and pod.attempt == action.retain_attempt and pod.phase in ("Failed", "Succeeded"):
                    self.retained[name] = RetainedPod(name, pod.attempt, until)
                    del self.pods[name]
            if self.slow_deletion:
                for pod in self.pods.values():
                    if pod.attempt != action.keep_attempt and pod.removed_in is None:
                        pod.removed_in = 1 if pod.lost else 4  # a lost node's pods are force-deleted
            else:
                self.pods = {n: p for n, p in self.pods.items() if p.attempt == action.keep_attempt}
        elif isinstance(action, TriggerSavepoint):
            req = self.status.snapshot_request
            assert req is not None
            rid, error = self._post_savepoint(action, req.key if self.jm_request_keys else None)
            if self.lost_answers > 0:  # it reached the JobMaster (or not: rid None); the answer is lost
                self.lost_answers -= 1
                rid, error = None, "POST http://10.0.0.1:8081/savepoints: TimeoutError"
            update = {"request_id": rid, "error": None} if rid is not None else {"error": error}
            self.status = self.status.model_copy(update={"snapshot_request": req.model_copy(update=update)})
        elif isinstance(action, TriggerCheckpoint):
            if self.checkpoints_on_request:
                self.add_checkpoint()
        elif isinstance(action, RescaleJob):
            self._rescale(action)
        elif isinstance(action, DeleteWorkers):
            for name in action.names:
                self.pods.pop(name, None)
        elif isinstance(action, DeleteRetained):
            for name in action.names:
                self.retained.pop(name, None)
        elif isinstance(action, CreateSnapshot | PatchSnapshot | DeleteSnapshot | DiscardLineages):
            self._apply_snapshot(action)

    def _post_savepoint(self, action: TriggerSavepoint, key: str | None) -> tuple[str | None, str | None]:
        """The JobMaster's side of ``POST /savepoints``: (request id, None) or (None, the 409's error)."""
        if key is not None and key in self.request_keys:
            return self.request_keys[key], None  # the request that key started, whatever became of it
        dep = self.status.deployment
        jobmaster = self.pods.get(f"demo-jobmaster-{dep.attempt}") if dep is not None else None
        if jobmaster is None or jobmaster.phase != "Running" or jobmaster.failure:
            return None, "POST http://10.0.0.1:8081/savepoints: Cannot connect to host"
        if self.jm_state is not JobState.RUNNING:
            return None, f"HTTP 409 the job is {self.jm_state}; savepoints can only be taken while it is RUNNING"
        attempt = jobmaster.attempt
        if any(p.status == "IN_PROGRESS" and self.request_attempt[r] == attempt for r, p in self.requests.items()):
            return None, "HTTP 409 a savepoint is already in progress; wait for it (GET /savepoints/<id>)"
        rid = f"r{len(self.requests) + 1}"
        self.requests[rid] = SavepointPoll("IN_PROGRESS")
        self.stop_requests[rid] = action.stop
        self.request_attempt[rid] = jobmaster.attempt
        if key is not None:
            self.request_keys[key] = rid
        return rid, None

    def _deploy(self, action: DeployAttempt) -> None:
        at = action.attempt
        name = f"demo-jobmaster-{at.attempt}"
        if name in self.pods:
            return
        self.deployed.append((at.attempt, at.job_id, at.restore_from, at.spec.parallelism))
        op = self.status.operation
        kind, started = (op.kind.value, op.started_at) if op else (None, None)
        self.deployments.append(
            Deployed(at.attempt, at.job_id, at.restore_from, at.spec.parallelism, self.now, kind, started)
        )
        pod = FakePod(name, "jobmaster", at.attempt, at.spec.image)
        self.jm_parallelism, self.jm_rescale = None, None  # a new JobMaster runs the attempt's spec
        if at.restore_from in self.unrestorable and not at.spec.allow_non_restored_state:
            pod.fails_on_start = f"pod {name} exited with code 1: {at.restore_from} holds state of an unknown operator"
        elif at.spec.image in self.unloadable_images:
            pod.fails_on_start = f"pod {name} exited with code 2: worker slot 0 cannot load the job: boom"
            pod.fails_final = True
        elif at.restore_from and at.job_id not in self.checkpoints and is_savepoint_location(at.restore_from):
            self.started_from.setdefault(at.job_id, at.restore_from)  # the JobMaster's _lineage.json
        self.pods[name] = pod

    def lose_node(self, *names: str) -> None:
        """The node of pods ``names`` dies: their processes with it; the pods stay Running, not ready."""
        for name in names:
            pod = self.pods[name]
            pod.lost = True
            pod.failure = f"pod {name} is gone with its node: its node n2 stopped reporting"

    def add_checkpoint(self) -> None:
        """The running job completes its next checkpoint."""
        job_id = self.status.job_id
        assert job_id is not None
        ids = self.checkpoints.setdefault(job_id, [])
        ids.append((ids[-1] if ids else 0) + 1)
        self.checkpoint_times[(job_id, ids[-1])] = self.now

    def tick(self) -> None:
        """One second passes: pods start or fail, deleted ones go, savepoints settle, checkpoints complete."""
        self.now += timedelta(seconds=1)
        for name, pod in list(self.pods.items()):
            if pod.removed_in is not None:
                pod.removed_in -= 1
                if pod.removed_in <= 0:
                    del self.pods[name]
        for pod in self.pods.values():
            if pod.phase == "Pending":
                if pod.image in self.broken_images:
                    pod.failure = f"pod {pod.name} cannot start its container: ImagePullBackOff"
                else:
                    pod.phase, pod.ip = "Running", f"10.0.0.{next(self.ip_pool)}"
            elif pod.phase == "Running" and pod.fails_on_start and pod.failure is None:
                pod.phase, pod.failure, pod.finished_at = "Failed", pod.fails_on_start, self.now
                pod.final = pod.fails_final
        self._settle_savepoints()
        self._settle_rescale()
        dep = self.status.deployment
        running = dep is not None and [
            p for p in self.pods.values() if p.attempt == dep.attempt and p.phase == "Running" and p.failure is None
        ]
        if (
            running
            and dep is not None
            and len(running) == dep_pods(dep.spec)
            and self.checkpointing
            and self.status.lifecycle_state is LifecycleState.RUNNING
        ):
            self.add_checkpoint()

    def _settle_savepoints(self) -> None:
        for rid, poll in list(self.requests.items()):
            if poll.status != "IN_PROGRESS":
                continue
            jobmaster = self.pods.get(f"demo-jobmaster-{self.request_attempt.get(rid)}")
            if jobmaster is None or jobmaster.phase != "Running" or jobmaster.failure:
                self.requests[rid] = SavepointPoll("FAILED", reason="the JobMaster is gone")
            elif self.savepoint_outcome == "COMPLETED":
                location = f"s3://b/c/ns/demo/{savepoint_dir_name(rid)}"
                self.requests[rid] = SavepointPoll("COMPLETED", location=location)
                self.savepoints[location] = self.now
                if self.stop_requests.get(rid):
                    for pod in self.pods.values():
                        pod.phase = "Succeeded"
            elif self.savepoint_outcome == "FAILED":
                self.requests[rid] = SavepointPoll("FAILED", reason="task not running")

    def run_until(self, done: Callable[[PlannerWorld], bool], steps: int = 60) -> None:
        """Steps until ``done``; fails with the status and the last events after ``steps`` rounds."""
        for _ in range(steps):
            if done(self):
                return
            self.step()
        raise AssertionError(f"not reached in {steps} rounds; status={self.status.wire()} events={self.events[-8:]}")

    def update_spec(self, **patch: Any) -> None:
        """The user changes the spec (a new generation), then one round runs."""
        self.spec = {**self.spec, **patch}
        self.generation += 1
        self.step()

    def count(self, kind: type) -> int:
        """How many actions of ``kind`` were carried out so far."""
        return sum(isinstance(a, kind) for a in self.actions)


def dep_pods(spec: dict[str, Any]) -> int:
    """Pods of an attempt of ``spec`` (the JobMaster and the workers)."""
    from streamjob.operator.model.spec import StreamJobSpec

    return StreamJobSpec.parse(spec).worker_pods + 1


__all__ = [
    "T0",
    "Clock",
    "Deployed",
    "FakeJobMaster",
    "FakeKube",
    "FakePod",
    "FakeSnapshots",
    "Planner",
    "PlannerWorld",
    "dep_pods",
    "fake_deps",
    "pod_object",
    "reconcile_rounds",
    "terminated",
]
