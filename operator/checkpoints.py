"""The operator's only door to checkpoint storage: finds snapshots by listing it (read-only).

Wraps ``streamjob.worker.storage`` (the layout is owned by the runtime): ``retained`` finds the
newest ``chk-<n>`` with a parsable ``_metadata`` under a jobId, else the savepoint the jobId started
from — found with the JobMaster dead — and the completed checkpoints skipped on the way because
their ``_metadata`` is corrupt (the planner reports those). ``savepoint_since`` finds a savepoint
completed after a stop-with-savepoint request whose JobMaster exited before answering. Blocking
storage calls run in a thread; every storage error becomes ``StorageUnavailableError``. Called by
``observer.gather`` and ``controller``; tests use a fake ``SnapshotFinder``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from streamjob.operator.errors import StorageUnavailableError
from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo
from streamjob.operator.timeutil import format_time

if TYPE_CHECKING:
    from streamjob.worker.storage.discovery import LatestSearch, SnapshotRef
    from streamjob.worker.storage.stores import StoreFactory


@dataclass(frozen=True)
class StorageAccess:
    """Where one StreamJob's snapshots live and how to reach them."""

    checkpoints_uri: str
    savepoints_uri: str
    namespace: str
    name: str
    endpoint: str | None = None
    region: str | None = None
    path_style: bool | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Retained:
    """What a jobId's next attempt restores (``latest``, None: nothing) and the corrupt checkpoints skipped."""

    latest: SnapshotInfo | None
    skipped: tuple[CorruptCheckpoint, ...] = ()
    """Completed checkpoints newer than ``latest`` whose ``_metadata`` was refused, newest first."""


class SnapshotFinder(Protocol):
    """Reads snapshots from storage."""

    async def retained(self, access: StorageAccess, job_id: str) -> Retained:
        """The snapshot the next attempt of ``job_id`` restores, and the corrupt checkpoints skipped for it."""
        ...

    async def savepoint_since(self, access: StorageAccess, since: datetime) -> SnapshotInfo | None:
        """The newest savepoint of the job completed at or after ``since``."""
        ...

    async def discard_lineage(self, access: StorageAccess, job_id: str) -> int:
        """Deletes the checkpoints of ``job_id`` (DELETE_ON_CANCELLATION with the JobMaster gone)."""
        ...

    async def lineages(self, access: StorageAccess) -> tuple[str, ...]:
        """The jobIds with a directory under ``<checkpointsUri>/<namespace>/<name>/``."""
        ...

    async def dispose(self, access: StorageAccess, location: str) -> int:
        """Deletes every object under a snapshot's directory (a disposed StreamJobSnapshot)."""
        ...


def _info(ref: SnapshotRef) -> SnapshotInfo:
    when = datetime.fromtimestamp(ref.timestamp_ms / 1000, tz=UTC) if ref.timestamp_ms else None
    kind: Literal["checkpoint", "savepoint"] = "savepoint" if ref.kind == "savepoint" else "checkpoint"
    return SnapshotInfo(
        kind=kind,
        location=ref.location,
        id=ref.checkpoint_id,
        job_id=ref.job_id,
        time=format_time(when) if when else None,
        size_bytes=ref.total_size,
        duration_ms=ref.duration_ms,
    )


def _retained(found: LatestSearch, job_id: str) -> Retained:
    skipped = tuple(
        CorruptCheckpoint(location=s.location, id=s.checkpoint_id, job_id=job_id, reason=s.reason)
        for s in found.skipped
    )
    return Retained(None if found.ref is None else _info(found.ref), skipped)


class StorageSnapshotFinder:
    """``SnapshotFinder`` over the runtime's storage code (file:// and s3://)."""

    def __init__(self) -> None:
        """One store factory (and so one S3 client) per distinct endpoint and credentials."""
        self._factories: dict[tuple[object, ...], StoreFactory] = {}
        self._lock = threading.Lock()

    def _factory(self, access: StorageAccess) -> StoreFactory:
        from streamjob.worker.storage.s3_settings import DEFAULT_REGION, S3Settings
        from streamjob.worker.storage.stores import StoreFactory

        key = (access.endpoint, access.region, access.path_style, access.access_key_id, access.secret_access_key)
        with self._lock:
            if key not in self._factories:
                env = S3Settings.from_env()
                settings = S3Settings(
                    endpoint_url=access.endpoint or env.endpoint_url,
                    region=access.region or env.region or DEFAULT_REGION,
                    path_style=access.path_style if access.path_style is not None else env.path_style,
                    access_key_id=access.access_key_id or env.access_key_id,
                    secret_access_key=access.secret_access_key or env.secret_access_key,
                )
                self._factories[key] = StoreFactory(settings)
            return self._factories[key]

    def _latest(self, access: StorageAccess, job_id: str) -> Retained:
        from streamjob.worker.storage.discovery import search_latest_retained

        store = self._factory(access).open(access.checkpoints_uri)
        return _retained(search_latest_retained(store, access.namespace, access.name, job_id), job_id)

    def _since(self, access: StorageAccess, since: datetime) -> SnapshotInfo | None:
        from streamjob.worker.storage.discovery import list_snapshots
        from streamjob.worker.storage.layout import savepoints_root
        from streamjob.worker.storage.uri import parse_storage_uri

        root = savepoints_root(parse_storage_uri(access.savepoints_uri), access.namespace, access.name)
        store = self._factory(access).open(root)
        for row in list_snapshots(store):
            if row.kind == "savepoint" and row.problem is None and row.time >= since:
                return SnapshotInfo(
                    kind="savepoint",
                    location=row.location,
                    id=row.id,
                    job_id=row.job_id,
                    time=format_time(row.time),
                    size_bytes=row.size,
                )
        return None

    def _discard(self, access: StorageAccess, job_id: str) -> int:
        from streamjob.worker.storage.layout import job_root
        from streamjob.worker.storage.uri import parse_storage_uri

        root = job_root(parse_storage_uri(access.checkpoints_uri), access.namespace, access.name, job_id)
        return self._factory(access).open(root).delete_prefix("")

    def _lineages(self, access: StorageAccess) -> tuple[str, ...]:
        from streamjob.worker.storage.layout import check_segment
        from streamjob.worker.storage.uri import parse_storage_uri

        root = parse_storage_uri(access.checkpoints_uri).join(
            check_segment(access.namespace, "namespace"), check_segment(access.name, "job name")
        )
        return tuple(sorted(d.strip("/") for d in self._factory(access).open(root).list_dirs("")))

    def _dispose(self, location: str, access: StorageAccess) -> int:
        from streamjob.worker.storage.layout import snapshot_dir_of
        from streamjob.worker.storage.uri import parse_storage_uri

        return self._factory(access).open(snapshot_dir_of(parse_storage_uri(location))).delete_prefix("")

    async def lineages(self, access: StorageAccess) -> tuple[str, ...]:
        """See ``SnapshotFinder``."""
        try:
            return await asyncio.to_thread(self._lineages, access)
        except Exception as err:
            raise StorageUnavailableError(f"cannot list the jobIds of {access.name}: {err}") from err

    async def dispose(self, access: StorageAccess, location: str) -> int:
        """See ``SnapshotFinder``."""
        try:
            return await asyncio.to_thread(self._dispose, location, access)
        except Exception as err:
            raise StorageUnavailableError(f"cannot delete the files of {location}: {err}") from err

    async def discard_lineage(self, access: StorageAccess, job_id: str) -> int:
        """See ``SnapshotFinder``."""
        try:
            return await asyncio.to_thread(self._discard, access, job_id)
        except Exception as err:
            raise StorageUnavailableError(f"cannot delete checkpoints of job {job_id}: {err}") from err

    async def retained(self, access: StorageAccess, job_id: str) -> Retained:
        """See ``SnapshotFinder``."""
        try:
            return await asyncio.to_thread(self._latest, access, job_id)
        except Exception as err:  # the storage layer's typed errors, botocore and OSError alike
            raise StorageUnavailableError(f"cannot list checkpoints of job {job_id}: {err}") from err

    async def savepoint_since(self, access: StorageAccess, since: datetime) -> SnapshotInfo | None:
        """See ``SnapshotFinder``."""
        try:
            return await asyncio.to_thread(self._since, access, since)
        except Exception as err:
            raise StorageUnavailableError(f"cannot list savepoints of {access.name}: {err}") from err
