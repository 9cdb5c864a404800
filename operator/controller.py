"""One reconcile round and the finalizer: observe → plan → write status (write-ahead) → act → events.

``reconcile`` is called in a loop by the per-StreamJob daemon in ``handlers``; ``finalize`` by the
deletion handler. Status is written before any action, with optimistic concurrency, so that a
crash between the two leaves the intent recorded and a conflicting writer (a second operator
replica, a user) makes this round stop before acting. Errors propagate as ``OperatorError``s.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from streamjob.operator import events
from streamjob.operator.deps import Deps
from streamjob.operator.errors import JobMasterError, KubernetesError, StorageUnavailableError
from streamjob.operator.model.snapshot import (
    SNAPSHOT_API_VERSION,
    SNAPSHOT_KIND,
    SnapshotState,
    StreamJobSnapshotStatus,
)
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import LifecycleState, OperationStep, SnapshotInfo, StreamJobStatus
from streamjob.operator.observer.gather import (
    effective_spec,
    gather,
    job_ref,
    jobmaster_address,
    rest_address,
    storage_access,
)
from streamjob.operator.observer.pods import view_pods
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
    EventRecord,
    PatchSnapshot,
    ReplaceWorkers,
    RescaleJob,
    SnapshotAction,
    TriggerCheckpoint,
    TriggerSavepoint,
)
from streamjob.operator.reconciler.plan import plan
from streamjob.operator.reconciler.snapshot_resources import labels as snapshot_labels
from streamjob.operator.reconciler.snapshot_resources import snapshot_name, storage_of
from streamjob.operator.resources import (
    build_configmap,
    build_jobmaster_pod,
    build_service,
    build_worker_pod,
    build_worker_pods,
    selector_for,
)
from streamjob.operator.resources.labels import (
    JobRef,
    configmap_name,
    detached_labels,
    retained_labels,
    retained_selector,
)
from streamjob.operator.resources.networkpolicy import build_network_policies
from streamjob.operator.resources.secret import build_secret, derive_job_secret, job_rest_token
from streamjob.operator.timeutil import format_time, seconds_since
from streamjob.worker.config import ExternalizedCheckpointCleanup

log = logging.getLogger(__name__)

#: Woken this long after a backoff's end, so that the round sees it passed (status times have ms precision).
BACKOFF_SLACK_S = 0.005


def status_body(raw: dict[str, Any] | None, status: StreamJobStatus) -> dict[str, Any]:
    """The status to write: ours, plus any keys other writers keep there (e.g. kopf's)."""
    ours = status.wire()
    known = {f.alias or name for name, f in StreamJobStatus.model_fields.items()}
    foreign = {k: v for k, v in (raw or {}).items() if k not in known}
    return foreign | ours


async def reconcile(deps: Deps, namespace: str, name: str) -> float:
    """One round for one StreamJob; returns the seconds until the next round should run."""
    cfg = deps.config
    body = await deps.kube.get_streamjob(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return cfg.poll_interval_s
    facts = await gather(deps, body)
    result = plan(facts)
    status = result.status
    if status != facts.status:
        body = await deps.kube.replace_status(body, status_body(body.get("status"), status))
    try:
        for action in result.actions:
            status, body = await execute(deps, body, status, action)
    except KubernetesError as err:
        await _report_action_error(deps, body, status, f"{type(action).__name__} failed: {err}")
        raise
    await events.publish(deps.kube, body, result.events)
    deps.metrics.observe((namespace, name), facts.status, status, facts.now, [e.reason for e in result.events])
    busy = status.operation is not None or status.snapshot_request is not None or bool(result.actions)
    return next_round_in(status, deps.clock(), busy=busy, busy_s=cfg.busy_interval_s, idle_s=cfg.poll_interval_s)


def next_round_in(status: StreamJobStatus, now: datetime, *, busy: bool, busy_s: float, idle_s: float) -> float:
    """Seconds until the next round: the busy or idle interval, or the end of a restart backoff if sooner.

    A backoff ends at ``operation.notBefore``; waking exactly then (not at the next busy tick) keeps
    every restart from waiting up to one more interval than the restart policy asks for.
    """
    interval = busy_s if busy else idle_s
    op = status.operation
    if op is None or op.step is not OperationStep.WAIT or not op.not_before:
        return interval
    remaining = -(seconds_since(op.not_before, now) or 0.0)
    return min(interval, max(0.0, remaining) + BACKOFF_SLACK_S)


async def _report_action_error(deps: Deps, body: dict[str, Any], status: StreamJobStatus, message: str) -> None:
    """Puts a failed Kubernetes call in status and an event, so users see it without operator logs."""
    if status.error == message:
        return
    try:
        await deps.kube.replace_status(
            body, status_body(body.get("status"), status.model_copy(update={"error": message}))
        )
    except KubernetesError as err:
        log.info("could not record the error in status: %s", err)
    await events.publish(deps.kube, body, [EventRecord("ActionFailed", message, warning=True)])


async def execute(
    deps: Deps, body: dict[str, Any], status: StreamJobStatus, action: Action
) -> tuple[StreamJobStatus, dict[str, Any]]:
    """Carries out one action; records a savepoint request id (or its failure) in status."""
    job = job_ref(body)
    kube = deps.kube
    if isinstance(action, DeployAttempt):
        for obj in job_security_objects(deps, job):
            await kube.create(obj)
        await kube.create(build_configmap(action.attempt))
        await kube.create(build_service(job))
        await kube.create(build_jobmaster_pod(action.attempt))
    elif isinstance(action, DeployWorkers):
        for pod in build_worker_pods(action.attempt, action.jobmaster_ip):
            await kube.create(pod)
    elif isinstance(action, ReplaceWorkers):
        # Out of the job first, so that no later round sees a crashed pod again while its object goes (an
        # operator stopped in between finds a worker missing: a restart of the attempt, never two replacements).
        for name in action.delete:
            await kube.patch_pod_metadata(job.namespace, name, detached_labels())
        for name in action.create:
            await kube.create(build_worker_pod(action.attempt, action.jobmaster_ip, name))
        await kube.delete_pods(job.namespace, list(action.delete), 0)
    elif isinstance(action, DeletePods):
        await delete_pods(deps, body, keep_attempt=action.keep_attempt, grace=action.grace_seconds, retain=action)
    elif isinstance(action, DeleteRetained | DeleteWorkers):
        await kube.delete_pods(job.namespace, list(action.names), 0)
    elif isinstance(action, RescaleJob):
        await _rescale(deps, body, status, action)
    elif isinstance(action, CreateSnapshot | PatchSnapshot | DeleteSnapshot | DiscardLineages):
        await execute_snapshot_action(deps, body, status, action)
    elif isinstance(action, TriggerSavepoint | TriggerCheckpoint):
        req = status.snapshot_request
        deployed = effective_spec(StreamJobSpec.parse(body["spec"]) if _parses(body) else None, status)
        address = rest_address(action.jobmaster_ip, deployed)
        update: dict[str, Any] = {}
        try:
            if isinstance(action, TriggerSavepoint):
                update["request_id"] = await deps.jobmaster.trigger_savepoint(
                    address,
                    stop=action.stop,
                    rest_token=job_rest_token(deps.config.operator_key, job),
                    key=req.key if req is not None else None,
                )
                update["error"] = None  # sent again with its key after an error: answered now
            else:
                await deps.jobmaster.trigger_checkpoint(
                    address, rest_token=job_rest_token(deps.config.operator_key, job)
                )
        except JobMasterError as err:
            update["error"] = str(err)
        if req is not None and update:
            status = status.model_copy(update={"snapshot_request": req.model_copy(update=update)})
            body = await kube.replace_status(body, status_body(body.get("status"), status))
    return status, body


async def _rescale(deps: Deps, body: dict[str, Any], status: StreamJobStatus, action: RescaleJob) -> None:
    """``POST /rescale``; a refusal is logged and asked again next round (the planner times it out)."""
    job = job_ref(body)
    deployed = effective_spec(StreamJobSpec.parse(body["spec"]) if _parses(body) else None, status)
    address = rest_address(action.jobmaster_ip, deployed)
    try:
        await deps.jobmaster.rescale(
            address, action.parallelism, rest_token=job_rest_token(deps.config.operator_key, job)
        )
    except JobMasterError as err:
        log.info(
            "%s/%s: the JobMaster did not take the rescale to %d: %s", job.namespace, job.name, action.parallelism, err
        )


async def execute_snapshot_action(
    deps: Deps, body: dict[str, Any], status: StreamJobStatus, action: SnapshotAction
) -> None:
    """Creates, updates or deletes a StreamJobSnapshot, or deletes older lineages' checkpoints.

    A lineage that cannot be deleted now is reported (Warning) and not retried: its files stay
    until the next lineage (``status.lineagesCleaned``).
    """
    job = job_ref(body)
    kube = deps.kube
    if isinstance(action, CreateSnapshot):
        await kube.create(action.body)
        await kube.patch_snapshot(job.namespace, action.body["metadata"]["name"], action.status, None)
    elif isinstance(action, PatchSnapshot):
        await kube.patch_snapshot(job.namespace, action.name, action.status, action.labels)
    elif isinstance(action, DeleteSnapshot):
        await kube.delete_snapshot(job.namespace, action.name)
    else:
        spec = effective_spec(StreamJobSpec.parse(body["spec"]) if _parses(body) else None, status)
        if spec is None:
            return
        try:
            access = await storage_access(deps, job, spec)
            for job_id in action.job_ids:
                await deps.snapshots.discard_lineage(access, job_id)
        except StorageUnavailableError as err:
            await events.publish(kube, body, [EventRecord("LineageCleanupFailed", str(err), warning=True)])


def job_security_objects(deps: Deps, job: JobRef) -> list[dict[str, Any]]:
    """The job's Secret (derived from the operator key) and, unless disabled, its NetworkPolicies.

    Created before the pods of every attempt; creating them again is harmless (the Secret's value
    is deterministic), so a Secret or policy deleted by hand comes back with the next attempt.
    """
    security = deps.config.security
    objects = [build_secret(job, derive_job_secret(deps.config.operator_key, job))]
    if security.network_policy:
        objects += build_network_policies(
            job, operator_namespace=security.operator_namespace, rest_from=security.rest_from
        )
    return objects


async def delete_pods(
    deps: Deps, body: dict[str, Any], *, keep_attempt: int | None, grace: int, retain: DeletePods | None = None
) -> None:
    """Deletes the job's pods and ConfigMaps of every attempt but ``keep_attempt``.

    ``retain``: the ended pods of its ``retain_attempt`` are kept instead, relabelled out of the job
    (``RETAINED_LABEL``) so that no round counts them, until ``retain_until``.
    """
    job = job_ref(body)
    pods = await deps.kube.list_pods(job.namespace, selector_for(job))
    views = view_pods(pods, now=deps.clock(), start_timeout_s=1e9)
    until = retain.retain_until if retain is not None else None
    kept = [
        v.name
        for v in views
        if until and retain is not None and v.attempt == retain.retain_attempt and v.terminated and not v.lost
    ]
    for name in kept:
        await deps.kube.patch_pod_metadata(job.namespace, name, retained_labels(job, until or ""))
    doomed = [v for v in views if v.attempt != keep_attempt and v.name not in kept]
    # A pod on a lost node is force-deleted: no kubelet will ever confirm a graceful deletion.
    await deps.kube.delete_pods(job.namespace, [v.name for v in doomed if not v.lost], grace)
    await deps.kube.delete_pods(job.namespace, [v.name for v in doomed if v.lost], 0)
    keep = {configmap_name(job, keep_attempt)} if keep_attempt is not None else set()
    await deps.kube.delete_configmaps(job.namespace, selector_for(job), keep)


# -- deletion ------------------------------------------------------------------------------------


async def finalize(deps: Deps, body: dict[str, Any]) -> None:
    """Deletion: optional final savepoint (bounded), cancel, cleanup — never hangs on the job."""
    job = job_ref(body)
    status = StreamJobStatus.parse(body.get("status"))
    spec = effective_spec(StreamJobSpec.parse(body["spec"]) if _parses(body) else None, status)
    records: list[EventRecord] = []
    if status.lifecycle_state is not LifecycleState.DELETING:
        status = status.model_copy(update={"lifecycle_state": LifecycleState.DELETING, "operation": None})
        try:
            body = await deps.kube.replace_status(body, status_body(body.get("status"), status))
        except KubernetesError as err:
            log.info("could not mark %s Deleting: %s", job.name, err)
    pods = view_pods(await deps.kube.list_pods(job.namespace, selector_for(job)), now=deps.clock(), start_timeout_s=1e9)
    address = jobmaster_address(pods, status, spec)
    cancelled = False
    if spec is not None and address is not None and status.deployment is not None:
        if spec.savepoint_on_deletion:
            records.append(await _final_savepoint(deps, address, spec, job))
        cancelled = await _cancel(deps, address, spec, job, records)
    await delete_pods(deps, body, keep_attempt=None, grace=5)
    retained = await deps.kube.list_pods(job.namespace, retained_selector(job))
    await deps.kube.delete_pods(job.namespace, [p["metadata"]["name"] for p in retained], 0)
    if spec is not None and status.job_id and not cancelled and _deletes_on_cancel(spec):
        try:
            access = await storage_access(deps, job, spec)
            count = await deps.snapshots.discard_lineage(access, status.job_id)
            records.append(EventRecord("CheckpointsDeleted", f"deleted {count} checkpoint files of {status.job_id}"))
        except (StorageUnavailableError, KubernetesError) as err:
            records.append(EventRecord("CheckpointCleanupFailed", str(err), warning=True))
    await abandon_snapshots(deps, job)
    records.append(EventRecord("Deleted", f"job {status.job_id or '-'} stopped and its pods deleted"))
    await events.publish(deps.kube, body, records)
    deps.metrics.forget((job.namespace, job.name))


async def abandon_snapshots(deps: Deps, job: JobRef) -> None:
    """The job is being deleted: its snapshots still pending or in progress will never complete."""
    try:
        listed = await deps.kube.list_snapshots(job.namespace) or []
        for view in (view_snapshot(b) for b in listed):
            if view.job == job.name and view.state in (SnapshotState.TRIGGER_PENDING, SnapshotState.IN_PROGRESS):
                abandoned = view.status.model_copy(
                    update={
                        "state": SnapshotState.ABANDONED,
                        "error": "the StreamJob was deleted before the snapshot completed",
                        "result_timestamp": format_time(deps.clock()),
                    }
                )
                await deps.kube.patch_snapshot(
                    job.namespace, view.name, abandoned.model_dump(mode="json", by_alias=True), None
                )
    except KubernetesError as err:
        log.info("could not mark the snapshots of %s abandoned: %s", job.name, err)


def _parses(body: dict[str, Any]) -> bool:
    try:
        StreamJobSpec.parse(body.get("spec"))
    except ValueError:
        return False
    return True


def _deletes_on_cancel(spec: StreamJobSpec) -> bool:
    return spec.checkpoint.externalized_cleanup is ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION


async def _final_savepoint(deps: Deps, address: str, spec: StreamJobSpec, job: JobRef) -> EventRecord:
    timeout = spec.timeouts.savepoint_seconds
    try:
        async with asyncio.timeout(timeout):
            token = job_rest_token(deps.config.operator_key, job)
            key = f"{job.uid}:deletion"
            request_id = await deps.jobmaster.trigger_savepoint(address, stop=True, rest_token=token, key=key)
            while True:
                poll = await deps.jobmaster.savepoint_status(address, request_id)
                if poll.status == "COMPLETED":
                    await _record_final_savepoint(deps, job, spec, poll.location or "")
                    return EventRecord("SavepointCompleted", f"final savepoint (deletion) completed: {poll.location}")
                if poll.status in ("FAILED", "UNKNOWN"):
                    raise JobMasterError(poll.reason or f"savepoint {poll.status}")
                await asyncio.sleep(0.5)
    except (JobMasterError, TimeoutError) as err:
        why = str(err) or f"not completed within {timeout}s"
        return EventRecord("SavepointFailed", f"final savepoint failed: {why}; deleting anyway", warning=True)


async def _record_final_savepoint(deps: Deps, job: JobRef, spec: StreamJobSpec, location: str) -> None:
    """The deletion's savepoint outlives the StreamJob as a COMPLETED StreamJobSnapshot (restorable by name)."""
    if not location:
        return
    now = format_time(deps.clock())
    name = snapshot_name(job.name, "deletion", now)
    status = StreamJobSnapshotStatus(
        state=SnapshotState.COMPLETED,
        path=location,
        trigger="deletion",
        trigger_timestamp=now,
        result_timestamp=now,
        storage=storage_of(spec),
    )
    body = {
        "apiVersion": SNAPSHOT_API_VERSION,
        "kind": SNAPSHOT_KIND,
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": snapshot_labels(job.name, "savepoint", "deletion"),
        },
        "spec": {"jobReference": {"name": job.name}, "type": "savepoint"},
    }
    try:
        if await deps.kube.list_snapshots(job.namespace) is not None:
            await deps.kube.create(body)
            await deps.kube.patch_snapshot(job.namespace, name, status.model_dump(mode="json", by_alias=True), None)
    except KubernetesError as err:
        log.info("could not record the final savepoint of %s: %s", job.name, err)


async def _cancel(deps: Deps, address: str, spec: StreamJobSpec, job: JobRef, records: list[EventRecord]) -> bool:
    try:
        async with asyncio.timeout(spec.timeouts.cancel_seconds):
            await deps.jobmaster.cancel(address, rest_token=job_rest_token(deps.config.operator_key, job))
        return True
    except (JobMasterError, TimeoutError) as err:
        records.append(EventRecord("CancelFailed", f"cancel failed: {err or 'timeout'}; deleting pods", warning=True))
        return False


def savepoint_info(location: str, trigger: str, now: datetime) -> SnapshotInfo:
    """A savepoint record for status."""
    return SnapshotInfo(kind="savepoint", location=location, trigger=trigger, time=format_time(now))
