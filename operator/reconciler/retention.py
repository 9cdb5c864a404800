"""What may go from storage: periodic savepoints due, snapshots past retention, old lineages, disposal (pure).

- ``periodic_due``: whether ``spec.savepoints`` (interval or cron) asks for a savepoint now;
- ``in_use``: the snapshot locations a job may still restore (never deleted, never disposed);
- ``expired_snapshots``: the StreamJobSnapshots the operator created that retention deletes (by count
  and age, the newest completed one always kept);
- ``old_lineages``: jobIds whose checkpoints may go once the current lineage has a retained checkpoint;
- ``disposal_refusal`` / ``disposable``: whether deleting a snapshot resource may delete its files.

Called by ``reconciler.snapshot_resources`` and by the disposal at the edge (``snapshot_disposal``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from streamjob.operator.cron import parse_cron
from streamjob.operator.model.snapshot import SnapshotState, SnapshotStorage, SnapshotType
from streamjob.operator.model.spec import SavepointsSpec, StreamJobSpec, duration_seconds
from streamjob.operator.model.status import LifecycleState, StreamJobStatus
from streamjob.operator.observer.snapshots import SnapshotView
from streamjob.operator.timeutil import parse_time
from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.layout import is_savepoint_location, snapshot_dir_of
from streamjob.worker.storage.uri import parse_storage_uri

JOB_ID = re.compile(r"[0-9a-f]{32}")


def periodic_due(spec: SavepointsSpec, *, last: datetime | None, running_since: datetime | None, now: datetime) -> bool:
    """Whether a periodic savepoint is due.

    Due when ``interval`` (or the next ``cron`` time) has passed since the later of the last periodic
    trigger and the start of the running attempt (which restored a fresh snapshot).
    """
    base = max((t for t in (last, running_since) if t is not None), default=None)
    if base is None:
        return False
    if spec.interval is not None:
        return (now - base).total_seconds() >= duration_seconds(spec.interval)
    if spec.cron is not None:
        following = parse_cron(spec.cron).next_after(base)
        return following is not None and following <= now
    return False


def _norm(location: str) -> str:
    return location.rstrip("/").removesuffix("/_metadata")


def in_use(status: StreamJobStatus) -> set[str]:
    """Locations the job restores now or next: its deployment's, its operation's, the one shown in status."""
    dep, op = status.deployment, status.operation
    found = {
        status.restore_from,
        dep.restore_from if dep is not None else None,
        op.restore_from if op is not None else None,
        op.savepoint if op is not None else None,
    }
    return {_norm(x) for x in found if x}


def _when(view: SnapshotView) -> datetime:
    moment = parse_time(view.status.result_timestamp) or parse_time(view.created)
    return moment or datetime.min.replace(tzinfo=UTC)


def expired_snapshots(
    views: tuple[SnapshotView, ...], spec: SavepointsSpec, *, now: datetime, used: set[str]
) -> list[str]:
    """Names of operator-created snapshots beyond ``maxCount`` or older than ``maxAge``.

    Users' snapshots are theirs to delete. The newest COMPLETED snapshot is kept whatever its age,
    and so is every snapshot whose location the job may still restore (``used``). FAILED and
    ABANDONED ones (no files) go beyond the same count.
    """
    ours = [v for v in views if not v.by_user and not v.deleting and v.state is not None and v.state.settled]
    max_age = duration_seconds(spec.max_age) if spec.max_age else None
    doomed: list[str] = []
    for completed in (True, False):
        group = sorted((v for v in ours if (v.state is SnapshotState.COMPLETED) == completed), key=_when, reverse=True)
        for index, view in enumerate(group):
            if completed and index == 0:
                continue
            if view.status.path and _norm(view.status.path) in used:
                continue
            too_old = max_age is not None and (now - _when(view)).total_seconds() > max_age
            if index >= spec.max_count or too_old:
                doomed.append(view.name)
    return doomed


def old_lineages(found: tuple[str, ...], *, current: str, keep: set[str], used: set[str]) -> list[str]:
    """JobIds other than ``current`` (and ``keep``) holding no location the job may still restore.

    Only directories named as the operator names jobIds (32 hex digits) are candidates: savepoint
    directories share the root when ``savepointsUri`` is unset, and nothing else there is ours to judge.
    """
    return sorted(
        job_id
        for job_id in found
        if JOB_ID.fullmatch(job_id)
        and job_id != current
        and job_id not in keep
        and not any(f"/{job_id}/" in f"{loc}/" for loc in used)
    )


def disposal_refusal(
    view: SnapshotView, job_status: StreamJobStatus | None, job_spec: StreamJobSpec | None
) -> str | None:
    """Why the files of the snapshot being deleted must stay (None: they may go).

    A restore point of the job (running, about to run, or what a suspended job resumes from) and the
    snapshot a not yet deployed job is told to restore by name are in use.
    """
    path = view.status.path
    if job_status is None or job_status.lifecycle_state is LifecycleState.DELETING:
        return None
    how = (
        "; delete it once the job has moved on, or set spec.disposeOnDelete: false to delete the resource "
        "and keep the files"
    )
    if path and _norm(path) in in_use(job_status):
        return f"its files are the restore point of StreamJob {view.job} ({job_status.lifecycle_state.value}){how}"
    named = (
        job_spec is not None and job_spec.restore_from is not None and job_spec.restore_from.snapshot_name == view.name
    )
    if named and job_status.job_id is None:
        return f"StreamJob {view.job} restores it by name (spec.restoreFrom) and has not deployed yet{how}"
    return None


def disposable(view: SnapshotView, storage: SnapshotStorage | None, namespace: str) -> bool:
    """Only a savepoint directory under the job's own savepoint or checkpoint storage is ever deleted.

    A snapshot recorded by ``spec.path`` may point anywhere; the operator's credentials must not
    delete data of another job (or team) because someone named it in a StreamJobSnapshot.
    """
    path = view.status.path
    if (
        view.spec is None
        or view.spec.type is not SnapshotType.SAVEPOINT
        or storage is None
        or not path
        or not is_savepoint_location(path)
    ):
        return False
    try:
        parent = snapshot_dir_of(parse_storage_uri(path)).parent
        roots = [parse_storage_uri(r) for r in (storage.savepoints_uri, storage.checkpoints_uri) if r]
        return any(parent == root.join(namespace, view.job) for root in roots)
    except ConfigError:  # a URI that does not parse is nobody's to delete
        return False
