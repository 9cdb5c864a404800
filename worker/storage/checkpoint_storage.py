"""One job's checkpoint storage and the two views of it that callers are typed against.

Bound to a ``JobStorageLocation`` (checkpoints URI, savepoints URI, namespace, name, jobId). As in
Flink (``CheckpointStorageWorkerView`` / ``CheckpointStorageCoordinatorView``), callers see only
their half:

- ``WorkerStorageView``, for a slot and its tasks: ``writer()`` per subtask and snapshot (handed to
  the state backends), ``reader()`` on restore, ``checkpoint_base_uri`` for local recovery copies.
- ``CoordinatorStorageView``, for the checkpoint coordinator: ``next_checkpoint_id``,
  ``new_savepoint_dir`` for savepoint targets, ``write_metadata`` LAST when every task acknowledged,
  ``discard`` for a failed checkpoint, ``list_checkpoints`` / ``delete_checkpoints`` for the
  retention that the ``CompletedCheckpointStore`` plans.
- ``JobStorageView``, for the JobMaster: the coordinator's view plus the lineage record when the
  jobId starts, ``load_metadata`` / ``resolve_restore_target`` / ``latest_retained`` /
  ``import_shared`` on restore, ``delete_job_root`` on DELETE_ON_CANCELLATION.

``CheckpointStorage`` implements both (``_implements_both_views`` makes mypy prove it); test fakes implement
one view and are checked against it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from streamjob.worker.errors import ConfigError, MetadataError, StorageError
from streamjob.worker.snapshot.handles import SnapshotReader, SnapshotWriter
from streamjob.worker.snapshot.metadata import (
    CheckpointMetadata,
    JobLineage,
    encode_lineage,
    encode_metadata,
)
from streamjob.worker.storage import discovery
from streamjob.worker.storage.layout import (
    LINEAGE_FILE,
    METADATA_FILE,
    SHARED_DIR,
    checkpoint_dir_name,
    checkpoint_ids,
    checkpoint_metadata_key,
    encode_uid,
    is_savepoint_dir,
    job_root,
    new_savepoint_name,
    savepoints_root,
)
from streamjob.worker.storage.object_store import ObjectNotFoundError, ObjectStore
from streamjob.worker.storage.retention import CheckpointEntry, RetentionPlan, RetentionStorage, plan_retention
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.snapshot_files import StorageSnapshotReader, StorageSnapshotWriter
from streamjob.worker.storage.snapshots import LoadedSnapshot, load_snapshot, read_metadata
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStorageLocation:
    """Where one job lineage's snapshots live."""

    checkpoints: StorageUri
    savepoints: StorageUri | None
    namespace: str
    name: str
    job_id: str

    @classmethod
    def parse(
        cls,
        checkpoints: str | StorageUri,
        savepoints: str | StorageUri | None,
        *,
        namespace: str,
        name: str,
        job_id: str,
    ) -> JobStorageLocation:
        """Parses the URIs and validates the path segments (``ConfigError``)."""
        location = cls(
            parse_storage_uri(checkpoints),
            None if savepoints is None else parse_storage_uri(savepoints),
            namespace,
            name,
            job_id,
        )
        _ = location.job_root
        return location

    @property
    def job_root(self) -> StorageUri:
        """``<checkpoints>/<namespace>/<name>/<jobId>``."""
        return job_root(self.checkpoints, self.namespace, self.name, self.job_id)

    @property
    def savepoints_root(self) -> StorageUri | None:
        """``<savepoints>/<namespace>/<name>``, or None when no savepoints URI is configured."""
        return None if self.savepoints is None else savepoints_root(self.savepoints, self.namespace, self.name)


class SubtaskSnapshotWriter(SnapshotWriter, Protocol):
    """The writer a task gets per operator and snapshot: a state backend's ``SnapshotWriter``, plus ``flush``."""

    def flush(self) -> None:
        """Makes the files written so far durable (before the task acknowledges the checkpoint)."""
        ...


class WorkerStorageView(Protocol):
    """What a slot and its tasks need: snapshot writers, restore readers and the checkpoint base."""

    @property
    def checkpoint_base_uri(self) -> str:
        """The base of checkpoint handle paths (local recovery keeps its copies under it)."""
        ...

    @property
    def local_disk(self) -> bool:
        """Whether checkpoints go to a file system of this machine (writes are cheap)."""
        ...

    def writer(
        self, checkpoint_id: int, operator_uid: str, subtask_index: int, *, savepoint_dir: str | None = None
    ) -> SubtaskSnapshotWriter:
        """A writer of one subtask's files of checkpoint ``checkpoint_id`` (or of a savepoint)."""
        ...

    def reader(self, base_uri: str) -> SnapshotReader:
        """A verifying reader of handles relative to ``base_uri``."""
        ...

    def warm_up(self) -> None:
        """Prepares the store's client ahead of the first checkpoint."""
        ...


class CoordinatorStorageView(RetentionStorage, Protocol):
    """What the checkpoint coordinator needs: checkpoint ids, savepoint directories, metadata, discards, retention."""

    def next_checkpoint_id(self, *, at_least: int = 1) -> int:
        """One more than the highest checkpoint directory under the jobId (and >= ``at_least``)."""
        ...

    def new_savepoint_dir(self, target: str | None = None) -> str:
        """A fresh savepoint directory URI under ``target`` (default: the job's savepoints root)."""
        ...

    def write_metadata(self, meta: CheckpointMetadata, *, savepoint_dir: str | None = None) -> str:
        """Writes ``_metadata`` (last: its presence marks completion); returns its URI."""
        ...

    def discard(self, checkpoint_id: int, *, savepoint_dir: str | None = None) -> int:
        """Deletes the files of a failed checkpoint or savepoint (never a completed one)."""
        ...


class JobStorageView(CoordinatorStorageView, Protocol):
    """What the JobMaster needs besides the coordinator's view: the lineage, restores, and deleting the jobId."""

    def load_metadata(self, uri: str) -> LoadedSnapshot:
        """Loads the snapshot at ``uri`` for a restore."""
        ...

    def import_shared(self, loaded: LoadedSnapshot) -> int:
        """Copies a restored checkpoint's shared files of another jobId under this jobId."""
        ...

    def resolve_restore_target(self, text: str) -> str | None:
        """``latest`` or a URI → the ``_metadata`` URI to restore (None: nothing to restore)."""
        ...

    def latest_retained(self) -> discovery.SnapshotRef | None:
        """The snapshot the next attempt of this jobId restores."""
        ...

    def read_lineage(self) -> JobLineage | None:
        """The jobId's lineage record, or None."""
        ...

    def write_lineage(self, restored_from: str | None) -> JobLineage:
        """Records when this jobId started and from which ``_metadata`` (the first record wins)."""
        ...

    def delete_job_root(self) -> int:
        """Deletes everything under the jobId (DELETE_ON_CANCELLATION)."""
        ...


class CheckpointStorage:
    """Checkpoint storage bound to one jobId (both views); thread-safe."""

    def __init__(
        self,
        location: JobStorageLocation,
        *,
        stores: StoreFactory | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``stores`` opens every URI (one shared S3 client); ``clock`` stamps the lineage file."""
        self.location = location
        self._stores = stores or StoreFactory()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._job = self._stores.open(location.job_root)

    @classmethod
    def open(
        cls,
        checkpoints: str | StorageUri,
        savepoints: str | StorageUri | None,
        *,
        namespace: str,
        name: str,
        job_id: str,
        s3: S3Settings | None = None,
    ) -> CheckpointStorage:
        """Parses the URIs and binds a storage (``s3`` defaults to ``S3Settings.from_env()``)."""
        location = JobStorageLocation.parse(checkpoints, savepoints, namespace=namespace, name=name, job_id=job_id)
        return cls(location, stores=StoreFactory(s3))

    @property
    def job_store(self) -> ObjectStore:
        """The store rooted at the jobId directory."""
        return self._job

    def warm_up(self) -> None:
        """Prepares the checkpoint store's client ahead of the first checkpoint (see ``ObjectStore.warm_up``)."""
        self._job.warm_up()

    @property
    def local_disk(self) -> bool:
        """Whether checkpoints go to a file system of this machine (``file://``), where writes are cheap."""
        return self.location.job_root.scheme == "file"

    @property
    def checkpoint_base_uri(self) -> str:
        """The jobId root: the base of every checkpoint handle path (pass it to ``reader``)."""
        return str(self.location.job_root)

    # Worker view

    def writer(
        self, checkpoint_id: int, operator_uid: str, subtask_index: int, *, savepoint_dir: str | None = None
    ) -> StorageSnapshotWriter:
        """A writer of one subtask's files for checkpoint ``checkpoint_id`` (or a savepoint into ``savepoint_dir``)."""
        if subtask_index < 0:
            raise ValueError(f"subtask_index must be >= 0, got {subtask_index}")
        subtask_prefix = f"{encode_uid(operator_uid)}/{subtask_index}/"
        if savepoint_dir is not None:
            return StorageSnapshotWriter(self._stores.open(savepoint_dir), checkpoint_id, subtask_prefix, None)
        return StorageSnapshotWriter(
            self._job, checkpoint_id, f"{checkpoint_dir_name(checkpoint_id)}/{subtask_prefix}", f"{SHARED_DIR}/"
        )

    def reader(self, base_uri: str) -> StorageSnapshotReader:
        """A verifying reader for handles relative to ``base_uri`` (``LoadedSnapshot.base_uri``)."""
        return StorageSnapshotReader(self._stores.open(base_uri))

    # Coordinator view

    def next_checkpoint_id(self, *, at_least: int = 1) -> int:
        """One more than the highest ``chk-<n>`` under the jobId, complete or not (and >= ``at_least``)."""
        ids = checkpoint_ids(self._job.list_dirs(""))
        return max(at_least, ids[-1] + 1 if ids else 1)

    def new_savepoint_dir(self, target: str | None = None) -> str:
        """A fresh ``savepoint-<id>`` directory URI for a savepoint.

        As in Flink, ``target`` is the *parent* directory (``POST /savepoints {target}``); the default
        parent is ``<savepoints>/<namespace>/<name>``. A fresh name never overwrites an older savepoint.
        """
        parent = parse_storage_uri(target) if target is not None else self.location.savepoints_root
        if parent is None:
            raise ConfigError(
                "no savepoints URI is configured: set the job's savepoints URI or give the savepoint a target directory"
            )
        return str(parent.join(new_savepoint_name(self.location.job_id)))

    def write_metadata(self, meta: CheckpointMetadata, *, savepoint_dir: str | None = None) -> str:
        """Writes ``_metadata`` (call it LAST); returns its URI. Never overwrites different content."""
        self._check_metadata(meta, savepoint_dir)
        data = encode_metadata(meta)
        if savepoint_dir is None:
            store, key = self._job, checkpoint_metadata_key(meta.checkpoint_id)
        else:
            store, key = self._stores.open(savepoint_dir), METADATA_FILE
        if not store.put(key, data, if_absent=True) and store.get(key) != data:
            raise MetadataError(
                f"{store.uri(key)} already exists with other content: another {meta.kind} "
                f"was written there (two coordinators of job {meta.job_id}?)"
            )
        return store.uri(key)

    def _check_metadata(self, meta: CheckpointMetadata, savepoint_dir: str | None) -> None:
        expected = "checkpoint" if savepoint_dir is None else "savepoint"
        if meta.kind != expected:
            raise MetadataError(
                f"a {meta.kind} _metadata must be written "
                f"{'with' if meta.kind == 'savepoint' else 'without'} savepoint_dir"
            )
        if meta.job_id != self.location.job_id:
            raise MetadataError(f"_metadata of job {meta.job_id} cannot be written under job {self.location.job_id}")
        if meta.kind == "savepoint" and meta.referenced_shared_files():
            raise MetadataError(
                "a savepoint must be self-contained but references shared files "
                f"{sorted(meta.referenced_shared_files())[:3]}"
            )

    def load_metadata(self, uri: str) -> LoadedSnapshot:
        """Loads the snapshot at ``uri`` (its directory or its ``_metadata``); ``MetadataError`` if bad."""
        return load_snapshot(self._stores.open, uri)

    def import_shared(self, loaded: LoadedSnapshot) -> int:
        """Copies the shared files of a checkpoint of *another* jobId into this jobId's ``shared/``.

        Call it on restore, before the first checkpoint: an incremental backend keeps referencing the
        restored ``shared/`` files by their relative paths, which must then exist under this jobId
        (and must outlive the other job's retention). A no-op for savepoints and for this jobId's own
        checkpoints. Returns the number of files copied.
        """
        if loaded.base_uri == self.checkpoint_base_uri:
            return 0
        shared = sorted(loaded.metadata.referenced_shared_files())
        if not shared:
            return 0
        source = self._stores.open(loaded.base_uri)
        copied = 0
        for key in shared:
            if not self._job.exists(key) and self._job.put(key, source.get(key), if_absent=True):
                copied += 1
        return copied

    def resolve_restore_target(self, text: str) -> str | None:
        """``--restore-from latest|URI`` → the ``_metadata`` URI (None: nothing to restore for latest)."""
        return discovery.resolve_restore_target(text, self._job)

    def latest_retained(self) -> discovery.SnapshotRef | None:
        """The snapshot the next attempt of this jobId restores (see ``discovery.find_latest_retained``)."""
        return discovery.find_latest_in_job(self._job)

    def discard(self, checkpoint_id: int, *, savepoint_dir: str | None = None) -> int:
        """Deletes the files of a failed or aborted checkpoint (or savepoint); returns the count.

        Refuses a completed one (its ``_metadata`` exists): retention deletes those. Shared files it
        uploaded are left: later checkpoints may reference them.
        """
        if savepoint_dir is not None:
            store, prefix = self._stores.open(savepoint_dir), ""
            if not is_savepoint_dir(store.root.name):
                raise StorageError(f"refusing to discard {savepoint_dir}: not a savepoint-* directory")
        else:
            store, prefix = self._job, f"{checkpoint_dir_name(checkpoint_id)}/"
        if store.exists(prefix + METADATA_FILE):
            raise StorageError(f"refusing to discard {store.uri(prefix + METADATA_FILE)}: it is completed")
        return store.delete_prefix(prefix)

    def list_checkpoints(self) -> list[CheckpointEntry]:
        """Every ``chk-<n>`` under the jobId, ascending: completed or not, and the shared files it references.

        A ``_metadata`` that cannot be read counts as completed but invalid (no shared references).
        """
        entries: list[CheckpointEntry] = []
        for cid in checkpoint_ids(self._job.list_dirs("")):
            try:
                meta = read_metadata(self._job, checkpoint_metadata_key(cid))
            except ObjectNotFoundError:
                entries.append(CheckpointEntry(cid, completed=False))
                continue
            except MetadataError as err:
                log.warning("checkpoint %s has unreadable metadata: %s", cid, err)
                entries.append(CheckpointEntry(cid, completed=True))
                continue
            entries.append(CheckpointEntry(cid, True, meta.referenced_shared_files()))
        return entries

    def delete_checkpoints(self, plan: RetentionPlan) -> None:
        """Executes a retention plan: ``_metadata`` files first, then the directories, then shared files.

        In that order a crash halfway never leaves a complete-looking checkpoint with missing files,
        and a shared file goes only after every checkpoint that referenced it.
        """
        if plan.empty:
            return
        self._job.delete_many(checkpoint_metadata_key(cid) for cid in plan.delete_ids)
        for cid in plan.delete_ids:
            self._job.delete_prefix(f"{checkpoint_dir_name(cid)}/")
        self._job.delete_many(plan.delete_shared)
        log.info(
            "retention kept checkpoints %s of %s, deleted %s and %d shared files",
            plan.retained_ids,
            self.location.job_root,
            plan.delete_ids,
            len(plan.delete_shared),
        )

    def apply_retention(self, retained: int) -> RetentionPlan:
        """Plans (``retention.plan_retention``) and runs one retention keeping the newest ``retained``.

        The coordinator's ``CompletedCheckpointStore`` plans its own, with a safeguard for the
        checkpoints it keeps; this is for tools and tests.
        """
        plan = plan_retention(self.list_checkpoints(), retained)
        self.delete_checkpoints(plan)
        return plan

    def delete_job_root(self) -> int:
        """Deletes everything under the jobId (DELETE_ON_CANCELLATION), ``_metadata`` files first."""
        keys = [info.key for info in self._job.list("")]
        self._job.delete_many(k for k in keys if k.endswith(f"/{METADATA_FILE}"))
        self._job.delete_many(k for k in keys if not k.endswith(f"/{METADATA_FILE}"))
        return len(keys)

    def write_lineage(self, restored_from: str | None) -> JobLineage:
        """Records when this jobId started and from which ``_metadata``; the first record wins."""
        lineage = JobLineage(
            job_id=self.location.job_id, created_at=self._clock().isoformat(), restored_from=restored_from
        )
        if self._job.put(LINEAGE_FILE, encode_lineage(lineage), if_absent=True):
            return lineage
        existing = self.read_lineage()
        return existing if existing is not None else lineage

    def read_lineage(self) -> JobLineage | None:
        """The jobId's lineage record, or None."""
        return discovery.read_lineage(self._job)


def dispose_savepoint(uri: str | StorageUri, stores: StoreFactory) -> int:
    """Deletes the savepoint at ``uri`` (its directory or ``_metadata``): ``_metadata`` first, then the rest.

    Refuses anything whose ``_metadata`` is missing, unreadable or not a savepoint, so that a wrong
    URI can never wipe a checkpoint directory or a bucket prefix. Returns the number of objects deleted.
    """
    loaded = load_snapshot(stores.open, uri)
    if loaded.metadata.kind != "savepoint":
        raise StorageError(
            f"refusing to dispose {loaded.directory}: it holds a {loaded.metadata.kind}, not a savepoint"
        )
    store = stores.open(loaded.directory)
    keys = [info.key for info in store.list("")]
    store.delete(METADATA_FILE)
    store.delete_many(k for k in keys if k != METADATA_FILE)
    return len(keys)


if TYPE_CHECKING:

    def _implements_both_views(storage: CheckpointStorage) -> tuple[WorkerStorageView, JobStorageView]:
        """Never called: mypy proves here that ``CheckpointStorage`` implements both views."""
        return storage, storage
