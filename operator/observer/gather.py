"""Gathers one round's facts about a StreamJob: spec problems, pods, JobMaster, storage (read-only).

Called by ``controller.reconcile``; it reads through the adapters in ``deps`` and acts on nothing.
A JobMaster that does not answer or storage that cannot be listed is a fact, not an error.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from streamjob.operator.checkpoints import StorageAccess
from streamjob.operator.deps import Deps
from streamjob.operator.errors import JobMasterError, KubernetesError, StorageUnavailableError
from streamjob.operator.model.jobmaster import JobMasterView, SavepointPoll
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo, StreamJobStatus
from streamjob.operator.observer.facts import Facts, RetainedPod
from streamjob.operator.observer.pods import PodView, view_pods
from streamjob.operator.observer.snapshots import SnapshotView, view_snapshot
from streamjob.operator.resources.labels import (
    ATTEMPT_LABEL,
    REST_PORT,
    RETAINED_UNTIL,
    JobRef,
    retained_selector,
    selector_for,
)
from streamjob.operator.timeutil import parse_time
from streamjob.operator.validation import parse_spec, validate

log = logging.getLogger(__name__)


def job_ref(body: dict[str, Any]) -> JobRef:
    """The identity of the StreamJob in ``body``."""
    meta = body["metadata"]
    return JobRef(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))


def effective_spec(spec: StreamJobSpec | None, status: StreamJobStatus) -> StreamJobSpec | None:
    """The user's spec if valid, else the deployed one (for timeouts and storage)."""
    if spec is not None:
        return spec
    if status.deployment is not None:
        return StreamJobSpec.parse(status.deployment.spec)
    return None


def rest_address(ip: str, spec: StreamJobSpec | None) -> str:
    """The REST address of a JobMaster at ``ip``: ``https://IP:PORT`` when the job's REST API has TLS."""
    return f"https://{ip}:{REST_PORT}" if spec is not None and spec.tls and spec.tls.rest else f"{ip}:{REST_PORT}"


def jobmaster_address(pods: list[PodView], status: StreamJobStatus, spec: StreamJobSpec | None = None) -> str | None:
    """``IP:PORT`` of the deployed attempt's JobMaster pod, when it has an IP and has not ended.

    An ended pod's address is not asked: nothing answers there, and on a real cluster a call to a
    released pod IP may hang until its timeout instead of being refused.
    """
    dep = status.deployment
    if dep is None:
        return None
    ip = next((p.ip for p in pods if p.attempt == dep.attempt and p.is_jobmaster and p.ip and not p.terminated), None)
    return rest_address(ip, spec) if ip else None


async def storage_access(deps: Deps, job: JobRef, spec: StreamJobSpec) -> StorageAccess:
    """Where the job's snapshots are, and with which credentials.

    By default the operator lists storage with its own credentials (its environment, set by the
    chart), so it needs no right to read Secrets; with ``rbac.readJobSecrets`` it reads the
    credentials the job names in ``credentialsSecret`` instead.
    """
    s3 = spec.storage.s3
    key_id = secret_key = None
    if s3.credentials_secret is not None and deps.config.security.read_job_secrets:
        data = await deps.kube.read_secret(job.namespace, s3.credentials_secret.name)
        key_id = data.get(s3.credentials_secret.access_key_id_key)
        secret_key = data.get(s3.credentials_secret.secret_access_key_key)
    return StorageAccess(
        checkpoints_uri=spec.storage.checkpoints_uri,
        savepoints_uri=spec.savepoints_root,
        namespace=job.namespace,
        name=job.name,
        endpoint=s3.endpoint,
        region=s3.region,
        path_style=s3.path_style,
        access_key_id=key_id,
        secret_access_key=secret_key,
    )


async def gather(deps: Deps, body: dict[str, Any]) -> Facts:
    """Observes everything the planner needs about the StreamJob ``body``."""
    job = job_ref(body)
    now = deps.clock()
    spec, errors = parse_spec(body.get("spec"))
    if spec is not None:
        errors = validate(spec, name=job.name, namespace=job.namespace, policy=deps.config.security)
    status = StreamJobStatus.parse(body.get("status"))
    usable = effective_spec(spec, status)
    start_timeout = usable.timeouts.pod_start_seconds if usable is not None else 180
    raw_pods = await deps.kube.list_pods(job.namespace, selector_for(job))
    pods = view_pods(raw_pods, now=now, start_timeout_s=start_timeout)
    address = jobmaster_address(pods, status, usable)
    jobmaster = JobMasterView(reachable=False)
    poll: SavepointPoll | None = None
    if address is not None:
        jobmaster = await deps.jobmaster.job(address)
        req = status.snapshot_request
        if jobmaster.reachable and req is not None and req.request_id and req.kind == "savepoint":
            try:
                poll = await deps.jobmaster.savepoint_status(address, req.request_id)
            except JobMasterError as err:
                log.info("savepoint %s of %s not readable: %s", req.request_id, job.name, err)
    retained = await _retained(deps, job, status) if deps.config.failed_pod_retention_s > 0 else ()
    latest: dict[str, SnapshotInfo | None] = {}
    skipped: dict[str, tuple[CorruptCheckpoint, ...]] = {}
    recent: SnapshotInfo | None = None
    storage_error: str | None = None
    if usable is not None:
        try:
            access = await storage_access(deps, job, usable)
            ids = {status.job_id, status.operation.job_id if status.operation else None}
            for job_id in sorted(i for i in ids if i):
                found = await deps.snapshots.retained(access, job_id)
                latest[job_id], skipped[job_id] = found.latest, found.skipped
            req = status.snapshot_request
            started = parse_time(req.started_at) if req is not None else None
            # A stop-with-savepoint whose answer is not COMPLETED (lost, refused on a re-send, unknown to a
            # restarted JobMaster, its JobMaster gone): storage says whether the stop wrote a savepoint.
            unsettled = poll is None or poll.status != "COMPLETED"
            if req is not None and req.kind == "savepoint" and req.stop and unsettled and started is not None:
                recent = await deps.snapshots.savepoint_since(access, started - timedelta(seconds=2))
        except (StorageUnavailableError, KubernetesError) as err:
            storage_error = str(err)
    snapshots, listed, restore_snapshot = await _snapshots(deps, job, spec)
    lineages: tuple[str, ...] | None = None
    if usable is not None and usable.delete_old_lineages and _may_clean_lineages(status, latest) and listed:
        try:
            lineages = await deps.snapshots.lineages(await storage_access(deps, job, usable))
        except (StorageUnavailableError, KubernetesError) as err:
            log.info("jobIds of %s not listed: %s", job.name, err)
    return Facts(
        job=job,
        generation=int(body["metadata"].get("generation") or 0),
        spec=spec,
        spec_errors=tuple(errors),
        status=status,
        now=now,
        new_job_id=deps.new_job_id(),
        pods=tuple(pods),
        jobmaster=jobmaster,
        savepoint_poll=poll,
        latest=latest,
        skipped=skipped,
        recent_savepoint=recent,
        storage_error=storage_error,
        retained=retained,
        pod_retention_s=deps.config.failed_pod_retention_s,
        snapshots=snapshots,
        snapshots_listed=listed,
        restore_snapshot=restore_snapshot,
        lineages=lineages,
    )


def _may_clean_lineages(status: StreamJobStatus, latest: dict[str, SnapshotInfo | None]) -> bool:
    """Older jobIds are listed only once per lineage, when it runs stably and has a checkpoint."""
    dep = status.deployment
    found = latest.get(status.job_id) if status.job_id else None
    return (
        status.job_id is not None
        and status.lineages_cleaned != status.job_id
        and status.operation is None
        and dep is not None
        and dep.stable
        and found is not None
        and found.kind == "checkpoint"
    )


async def _snapshots(
    deps: Deps, job: JobRef, spec: StreamJobSpec | None
) -> tuple[tuple[SnapshotView, ...], bool, SnapshotView | None]:
    """The job's StreamJobSnapshots, whether they could be listed, and the one ``restoreFrom`` names."""
    try:
        raw = await deps.kube.list_snapshots(job.namespace)
    except KubernetesError as err:
        log.info("snapshots of %s not listed: %s", job.name, err)
        return (), False, None
    if raw is None:
        return (), False, None
    views = [view_snapshot(body) for body in raw]
    wanted = spec.restore_from.snapshot_name if spec is not None and spec.restore_from is not None else None
    named = next((v for v in views if v.name == wanted), None)
    return tuple(v for v in views if v.job == job.name), True, named


async def _retained(deps: Deps, job: JobRef, status: StreamJobStatus) -> tuple[RetainedPod, ...]:
    """The pods kept from failed attempts; listed only while the last failure kept some (no extra call otherwise)."""
    last = status.last_failure
    if last is None or not last.retained_pods:
        return ()
    found = []
    for pod in await deps.kube.list_pods(job.namespace, retained_selector(job)):
        meta = pod.get("metadata") or {}
        try:
            attempt = int((meta.get("labels") or {}).get(ATTEMPT_LABEL, "-1"))
        except ValueError:
            attempt = -1
        until = parse_time((meta.get("annotations") or {}).get(RETAINED_UNTIL))
        found.append(RetainedPod(str(meta.get("name")), attempt, until))
    return tuple(found)
