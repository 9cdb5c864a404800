"""Deleting a StreamJobSnapshot: its files go with it (``disposeOnDelete``) unless they are in use.

(Also ``report_orphan``: a new snapshot naming no existing StreamJob says so in its status.)

Called by the kopf deletion handler of StreamJobSnapshots (``handlers``), which holds the finalizer
until this returns. The decisions are ``reconciler.retention``'s: a restore point of the job is
refused (``SnapshotInUse``, retried; the status and a Warning event say why and how to go on), and
only a savepoint directory under the job's own storage is ever deleted, so that naming another
job's data in ``spec.path`` deletes nothing. With the job gone, the storage recorded in the
snapshot's status when it completed is used.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from streamjob.operator import events
from streamjob.operator.checkpoints import StorageAccess
from streamjob.operator.deps import Deps
from streamjob.operator.errors import OperatorError
from streamjob.operator.model.snapshot import SnapshotState
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import StreamJobStatus
from streamjob.operator.observer.gather import job_ref, storage_access
from streamjob.operator.observer.snapshots import view_snapshot
from streamjob.operator.reconciler.facts import EventRecord
from streamjob.operator.reconciler.retention import disposable, disposal_refusal
from streamjob.operator.reconciler.snapshot_resources import storage_of

#: Seconds between checks of a refused disposal (the restore point may have moved on).
REFUSED_RETRY_S = 10.0


class SnapshotInUse(OperatorError):
    """The snapshot's files are a restore point of its job: deletion waits."""

    retry_after = REFUSED_RETRY_S


def _parsed(body: dict[str, Any] | None) -> tuple[StreamJobSpec | None, StreamJobStatus | None]:
    if body is None:
        return None, None
    try:
        spec: StreamJobSpec | None = StreamJobSpec.parse(body.get("spec"))
    except ValidationError:
        spec = None
    return spec, StreamJobStatus.parse(body.get("status"))


async def dispose(deps: Deps, body: dict[str, Any]) -> str:
    """Deletes the files of the StreamJobSnapshot ``body`` if it asks for it; returns what was done.

    Raises ``SnapshotInUse`` while they are a restore point, ``StorageUnavailableError`` when storage
    fails (both retried by the handler).
    """
    view = view_snapshot(body)
    namespace = str(body["metadata"]["namespace"])
    if view.spec is None or not view.spec.disposes:
        return "files kept (disposeOnDelete is false)"
    if view.state is not SnapshotState.COMPLETED or not view.status.path:
        return f"nothing to dispose of ({view.state.value if view.state else 'never triggered'})"
    job_body = await deps.kube.get_streamjob(namespace, view.job)
    spec, status = _parsed(job_body)
    refusal = disposal_refusal(view, status, spec)
    if refusal is not None:
        message = f"files of {view.name} not deleted: {refusal}"
        if view.status.error != message:
            refused = view.status.model_copy(update={"error": message})
            await deps.kube.patch_snapshot(namespace, view.name, refused.model_dump(mode="json", by_alias=True), None)
            await events.publish(deps.kube, body, [EventRecord("DisposalRefused", message, warning=True)])
        raise SnapshotInUse(message)
    storage = storage_of(spec) if spec is not None else view.status.storage
    if not disposable(view, storage, namespace):
        message = f"files of {view.name} kept: {view.status.path} is not a savepoint under the job's storage"
        await events.publish(deps.kube, body, [EventRecord("FilesKept", message, warning=True)])
        return message
    assert storage is not None and view.status.path is not None
    if job_body is not None and spec is not None:
        access = await storage_access(deps, job_ref(job_body), spec)
    else:
        access = StorageAccess(
            checkpoints_uri=storage.checkpoints_uri or "",
            savepoints_uri=storage.savepoints_uri or "",
            namespace=namespace,
            name=view.job,
            endpoint=storage.endpoint,
            region=storage.region,
            path_style=storage.path_style,
        )
    count = await deps.snapshots.dispose(access, view.status.path)
    message = f"deleted {count} files of {view.status.path}"
    await events.publish(deps.kube, body, [EventRecord("SnapshotDisposed", message)])
    return message


async def report_orphan(deps: Deps, body: dict[str, Any]) -> bool:
    """A snapshot the operator has not taken up whose ``jobReference`` names no StreamJob: say so in status.

    The job's rounds take up every other snapshot; this one would stay without a word. Returns
    whether it was reported (once: an unchanged error is not written again).
    """
    view = view_snapshot(body)
    namespace = str(body["metadata"]["namespace"])
    if view.state is not None or view.deleting or not view.job:
        return False
    if await deps.kube.get_streamjob(namespace, view.job) is not None:
        return False
    message = (
        f"spec.jobReference.name: no StreamJob {view.job!r} in namespace {namespace}; "
        "create it (the snapshot is taken once it runs) or fix the name"
    )
    if view.status.error == message:
        return False
    status = view.status.model_copy(update={"error": message})
    await deps.kube.patch_snapshot(namespace, view.name, status.model_dump(mode="json", by_alias=True), None)
    return True
