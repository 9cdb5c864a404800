"""Checkpoint storage: URIs, the file and S3 object stores, the layout, and one job's snapshots.

The names below are the layer's public surface (the runtime, the JobMaster, the CLI and the operator
import them from here); the modules behind them are internal. boto3 is imported only when an
``s3://`` URI is opened.
"""

from streamjob.worker.storage.checkpoint_storage import (
    CheckpointStorage,
    CoordinatorStorageView,
    JobStorageLocation,
    WorkerStorageView,
    dispose_savepoint,
)
from streamjob.worker.storage.discovery import (
    SnapshotRef,
    SnapshotRow,
    find_latest_retained,
    list_snapshots,
    render_snapshot_table,
    resolve_restore_target,
)
from streamjob.worker.storage.lineages import latest_lineage
from streamjob.worker.storage.object_store import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PendingUpload,
    UploadedPart,
)
from streamjob.worker.storage.retention import RetentionPlan, plan_retention
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.snapshot_files import CorruptStateError, StorageSnapshotReader, StorageSnapshotWriter
from streamjob.worker.storage.snapshots import LoadedSnapshot
from streamjob.worker.storage.stores import StoreFactory, open_store
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

__all__ = [
    "CheckpointStorage",
    "CoordinatorStorageView",
    "CorruptStateError",
    "JobStorageLocation",
    "LoadedSnapshot",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "PendingUpload",
    "RetentionPlan",
    "S3Settings",
    "SnapshotRef",
    "SnapshotRow",
    "StorageSnapshotReader",
    "StorageSnapshotWriter",
    "StorageUri",
    "StoreFactory",
    "UploadedPart",
    "WorkerStorageView",
    "dispose_savepoint",
    "find_latest_retained",
    "latest_lineage",
    "list_snapshots",
    "open_store",
    "parse_storage_uri",
    "plan_retention",
    "render_snapshot_table",
    "resolve_restore_target",
]
