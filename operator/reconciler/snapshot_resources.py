"""StreamJobSnapshot resources in a job's round: record, trigger, settle, abandon, expire (pure).

- every savepoint the operator asks for (nonce, periodic, upgrade, suspension) and every manual
  checkpoint gets a StreamJobSnapshot, named in ``status.snapshotRequest.snapshot`` before it is
  created (``record_request``), so that an operator restart creates the same one;
- a snapshot a user created is labelled and set TRIGGER_PENDING (or COMPLETED when it names an
  existing ``path``), then triggered when the job runs and nothing else is in flight
  (``trigger_user_snapshot``), retried up to ``backoffLimit`` times (``settle``);
- one still pending or in progress when the job stops (suspended, failed, finished) is ABANDONED;
- retention deletes the operator's snapshots beyond ``spec.savepoints`` (their finalizer disposes
  of the files), and the checkpoints of older lineages go once the current one has a checkpoint.

Nothing here runs when the StreamJobSnapshot CRD is not installed (``Facts.snapshots_listed``).
Called by ``reconciler.plan``.
"""

from __future__ import annotations

from typing import Any

from streamjob.operator.model.snapshot import (
    SNAPSHOT_API_VERSION,
    SNAPSHOT_KIND,
    TRIGGER_LABEL,
    TYPE_LABEL,
    USER_TRIGGER,
    SnapshotState,
    SnapshotStorage,
    StreamJobSnapshotStatus,
)
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import LifecycleState, SnapshotRequest
from streamjob.operator.observer.snapshots import SnapshotView
from streamjob.operator.reconciler import retention
from streamjob.operator.reconciler.facts import (
    CreateSnapshot,
    DeleteSnapshot,
    DiscardLineages,
    Draft,
    PatchSnapshot,
    TriggerCheckpoint,
    TriggerSavepoint,
)
from streamjob.operator.resources.labels import JOB_LABEL, MANAGED_BY_LABEL
from streamjob.operator.timeutil import parse_time

#: Lifecycle states in which no snapshot can be taken until the user acts: pending ones are ABANDONED.
STOPPED = (LifecycleState.SUSPENDED, LifecycleState.FAILED, LifecycleState.FINISHED, LifecycleState.DELETING)


def _spec(d: Draft) -> StreamJobSpec | None:
    if d.facts.spec is not None:
        return d.facts.spec
    dep = d.status.deployment
    return StreamJobSpec.parse(dep.spec) if dep is not None else None


def storage_of(spec: StreamJobSpec | None) -> SnapshotStorage | None:
    """What disposing of the snapshot's files needs to know once the job may be gone."""
    if spec is None:
        return None
    s3 = spec.storage.s3
    return SnapshotStorage(
        endpoint=s3.endpoint,
        region=s3.region,
        path_style=s3.path_style,
        checkpoints_uri=spec.storage.checkpoints_uri,
        savepoints_uri=spec.savepoints_root,
    )


def labels(job: str, kind: str, trigger: str) -> dict[str, str]:
    """The labels to select snapshots by: job, type, trigger."""
    return {JOB_LABEL: job, TYPE_LABEL: kind, TRIGGER_LABEL: trigger}


def snapshot_name(job: str, trigger: str, now_text: str) -> str:
    """``<job>-<trigger>-<yyyymmdd-hhmmss-mmm>``: unique per round of one job (rounds never share a millisecond)."""
    digits = "".join(ch for ch in now_text if ch.isdigit())
    return f"{job}-{trigger}-{digits[:8]}-{digits[8:14]}-{digits[14:17]}"


def _patch(d: Draft, view_name: str, status: StreamJobSnapshotStatus, new_labels: dict[str, str] | None = None) -> None:
    d.act(PatchSnapshot(view_name, status.model_dump(mode="json", by_alias=True), new_labels))


def _touched(d: Draft) -> set[str]:
    return {a.name for a in d.actions if isinstance(a, PatchSnapshot)} | {
        str(a.body["metadata"]["name"]) for a in d.actions if isinstance(a, CreateSnapshot)
    }


# -- requests the operator makes -----------------------------------------------------------------


def _recorded(req: SnapshotRequest) -> bool:
    return req.kind == "savepoint" or req.trigger in ("manual", USER_TRIGGER)


def record_request(d: Draft) -> None:
    """Names (write-ahead) and creates the StreamJobSnapshot of a request the operator made."""
    req = d.status.snapshot_request
    if req is None or not _recorded(req) or req.trigger == USER_TRIGGER:
        return
    if req.snapshot is None:
        req = req.model_copy(update={"snapshot": snapshot_name(d.facts.job.name, req.trigger, req.started_at)})
        d.update(snapshot_request=req)
    elif d.facts.snapshot(req.snapshot) is not None:
        return
    assert req.snapshot is not None
    status = StreamJobSnapshotStatus(
        state=SnapshotState.IN_PROGRESS, job_id=d.status.job_id, trigger=req.trigger, trigger_timestamp=req.started_at
    )
    body: dict[str, Any] = {
        "apiVersion": SNAPSHOT_API_VERSION,
        "kind": SNAPSHOT_KIND,
        "metadata": {
            "name": req.snapshot,
            "namespace": d.facts.job.namespace,
            "labels": labels(d.facts.job.name, req.kind, req.trigger) | {MANAGED_BY_LABEL: "streamjob-operator"},
        },
        "spec": {"jobReference": {"name": d.facts.job.name}, "type": req.kind},
    }
    d.act(CreateSnapshot(body, status.model_dump(mode="json", by_alias=True)))


def settle(d: Draft, req: SnapshotRequest, *, location: str | None, failure: str | None) -> None:
    """The request ended: its snapshot is COMPLETED, or failed (retried within ``backoffLimit``)."""
    if req.snapshot is None or not d.facts.snapshots_listed:
        return
    view = d.facts.snapshot(req.snapshot)
    current = view.status if view is not None else StreamJobSnapshotStatus(trigger=req.trigger)
    if location is not None:
        status = current.model_copy(
            update={
                "state": SnapshotState.COMPLETED,
                "path": location,
                "job_id": current.job_id or d.status.job_id,
                "result_timestamp": d.now_text,
                "error": None,
                "storage": storage_of(_spec(d)),
            }
        )
    else:
        failures = current.failures + 1
        limit = view.spec.backoff_limit if view is not None and view.spec is not None and view.by_user else 0
        retry = failures <= limit and d.status.lifecycle_state not in STOPPED
        status = current.model_copy(
            update={
                "state": SnapshotState.TRIGGER_PENDING if retry else SnapshotState.FAILED,
                "failures": failures,
                "error": failure,
                "result_timestamp": None if retry else d.now_text,
            }
        )
    _patch(d, req.snapshot, status)


# -- snapshots users create ----------------------------------------------------------------------


def _pending(d: Draft) -> list[SnapshotView]:
    views = [v for v in d.facts.snapshots if v.state is SnapshotState.TRIGGER_PENDING and not v.deleting]
    return sorted(views, key=lambda v: (v.created or "", v.name))


def trigger_user_snapshot(d: Draft, ip: str) -> bool:
    """Triggers the oldest pending snapshot a user created (the job runs, nothing else is in flight)."""
    views = [v for v in _pending(d) if v.spec is not None]
    if not views:
        return False
    view = views[0]
    assert view.spec is not None
    kind = view.spec.type.value
    latest = d.facts.latest_of(d.status.job_id)
    req = SnapshotRequest(
        kind="savepoint" if kind == "savepoint" else "checkpoint",
        trigger=view.trigger,
        started_at=d.now_text,
        snapshot=view.name,
        baseline_checkpoint_id=latest.id if latest is not None and kind == "checkpoint" else None,
    )
    d.update(snapshot_request=req)
    d.act(TriggerSavepoint(jobmaster_ip=ip, stop=False) if kind == "savepoint" else TriggerCheckpoint(jobmaster_ip=ip))
    status = view.status.model_copy(
        update={"state": SnapshotState.IN_PROGRESS, "trigger_timestamp": d.now_text, "job_id": d.status.job_id}
    )
    _patch(d, view.name, status)
    return True


def _first_sight(d: Draft, view: SnapshotView) -> None:
    """A snapshot the operator has not seen: labelled, then pending, recorded (``path``) or refused."""
    kind = view.spec.type.value if view.spec is not None else "unknown"
    new_labels = labels(d.facts.job.name, kind, view.trigger)
    if view.spec is None:
        status = view.status.model_copy(
            update={"state": SnapshotState.FAILED, "error": view.spec_error, "result_timestamp": d.now_text}
        )
    elif view.spec.path:
        status = view.status.model_copy(
            update={
                "state": SnapshotState.COMPLETED,
                "path": view.spec.path.rstrip("/").removesuffix("/_metadata"),
                "trigger": view.trigger,
                "result_timestamp": d.now_text,
                "storage": storage_of(_spec(d)),
            }
        )
    else:
        status = view.status.model_copy(
            update={"state": SnapshotState.TRIGGER_PENDING, "trigger": view.trigger, "error": None}
        )
    _patch(d, view.name, status, new_labels)


def _stopped(d: Draft) -> bool:
    st = d.status
    return st.operation is None and st.lifecycle_state in STOPPED


def sync(d: Draft) -> None:
    """Keeps the job's snapshot resources true to the facts; run last in the round."""
    if not d.facts.snapshots_listed:
        return
    record_request(d)
    touched = _touched(d)
    req = d.status.snapshot_request
    for view in d.facts.snapshots:
        if view.deleting or view.name in touched:
            continue
        if view.state is None:
            _first_sight(d, view)
        elif view.state in (SnapshotState.TRIGGER_PENDING, SnapshotState.IN_PROGRESS) and _stopped(d):
            abandon(d, view, f"the job stopped ({d.status.lifecycle_state.value}) before the snapshot completed")
        elif view.state is SnapshotState.IN_PROGRESS and (req is None or req.snapshot != view.name):
            abandon(d, view, "its request ended without a result (the JobMaster or the operator restarted)")
    _expire(d)
    _old_lineages(d)


def abandon(d: Draft, view: SnapshotView, why: str) -> None:
    """ABANDONED: it will not complete (the job stopped or its request was lost)."""
    status = view.status.model_copy(
        update={"state": SnapshotState.ABANDONED, "error": why, "result_timestamp": d.now_text}
    )
    _patch(d, view.name, status)
    d.event("SnapshotAbandoned", f"snapshot {view.name} abandoned: {why}", warning=True)


# -- retention -----------------------------------------------------------------------------------


def _expire(d: Draft) -> None:
    spec = d.facts.spec
    if spec is None:
        return
    used = retention.in_use(d.status)
    doomed = retention.expired_snapshots(d.facts.snapshots, spec.savepoints, now=d.facts.now, used=used)
    for name in doomed:
        d.act(DeleteSnapshot(name))
    gone = {v.status.path for v in d.facts.snapshots if v.name in doomed and v.status.path}
    history = d.status.savepoint_history
    if gone and any(s.location in gone for s in history):
        d.update(savepoint_history=[s for s in history if s.location not in gone])  # status lists no deleted files
    if doomed:
        d.event("SnapshotsExpired", f"deleting {len(doomed)} snapshot(s) past retention: {', '.join(doomed)}")


def lineages_cleanable(d: Draft) -> bool:
    """Older lineages may go: the job runs its own, stable lineage, which has a retained checkpoint."""
    st = d.status
    dep = st.deployment
    latest = d.facts.latest_of(st.job_id)
    return (
        st.job_id is not None
        and st.lineages_cleaned != st.job_id
        and st.operation is None
        and st.lifecycle_state.running
        and dep is not None
        and dep.stable
        and dep.job_id == st.job_id
        and latest is not None
        and latest.kind == "checkpoint"
    )


def _old_lineages(d: Draft) -> None:
    spec = d.facts.spec
    st = d.status
    found = d.facts.lineages
    if spec is None or found is None or not spec.delete_old_lineages:
        return
    if not lineages_cleanable(d):
        return
    assert st.job_id is not None
    used = retention.in_use(st) | {
        v.status.path.rstrip("/") for v in d.facts.snapshots if v.status.path and v.state is SnapshotState.COMPLETED
    }
    doomed = retention.old_lineages(found, current=st.job_id, keep=set(), used=used)
    d.update(lineages_cleaned=st.job_id)
    if doomed:
        d.act(DiscardLineages(tuple(doomed)))
        d.event("LineagesDeleted", f"deleting the checkpoints of {len(doomed)} older jobId(s): {', '.join(doomed)}")


def periodic(d: Draft, spec: StreamJobSpec, ip: str) -> bool:
    """Triggers a periodic savepoint when one is due (``retention.periodic_due``)."""
    dep = d.status.deployment
    due = retention.periodic_due(
        spec.savepoints,
        last=parse_time(d.status.last_periodic_savepoint),
        running_since=parse_time(dep.running_since) if dep is not None else None,
        now=d.facts.now,
    )
    if not due:
        return False
    d.update(
        snapshot_request=SnapshotRequest(kind="savepoint", trigger="periodic", started_at=d.now_text),
        last_periodic_savepoint=d.now_text,
    )
    d.act(TriggerSavepoint(jobmaster_ip=ip, stop=False))
    return True
