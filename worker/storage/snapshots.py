"""Loading a snapshot's ``_metadata`` from any URI: ``LoadedSnapshot`` and ``load_snapshot``.

Shared by ``CheckpointStorage.load_metadata`` (restores), ``discovery`` (the operator and the CLI)
and ``SnapshotRef``. A URI may name a snapshot directory or its ``_metadata`` file; the result says
where handle paths are based so that the caller can open a reader there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streamjob.worker.errors import MetadataError
from streamjob.worker.snapshot.metadata import MAX_METADATA_BYTES, CheckpointMetadata, decode_metadata
from streamjob.worker.storage.layout import METADATA_FILE, snapshot_base, snapshot_dir_of
from streamjob.worker.storage.object_store import ObjectNotFoundError, ObjectStore, ObjectTooLargeError
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

Opener = Callable[[StorageUri], ObjectStore]
"""Opens a store rooted at a URI (``StoreFactory.open`` or ``ObjectStore.at``)."""


@dataclass(frozen=True)
class LoadedSnapshot:
    """A parsed ``_metadata`` and where it lives."""

    metadata: CheckpointMetadata
    metadata_uri: str
    base_uri: str
    """Handle paths are relative to this URI: pass it to ``CheckpointStorage.reader``."""

    @property
    def directory(self) -> str:
        """The snapshot directory (``.../chk-<n>`` or ``.../savepoint-<id>``)."""
        return self.metadata_uri.rsplit("/", 1)[0]


def read_metadata(store: ObjectStore, key: str) -> CheckpointMetadata:
    """Reads and decodes ``key`` of ``store``: ``ObjectNotFoundError`` if absent, ``MetadataError`` if bad.

    At most ``MAX_METADATA_BYTES`` are read: a larger file is a ``MetadataError`` (poison, not state).
    """
    try:
        data = store.get(key, max_bytes=MAX_METADATA_BYTES)
    except ObjectTooLargeError as err:
        raise MetadataError(
            f"checkpoint metadata {err}: it is not a snapshot's metadata; restore from an older "
            "checkpoint or a savepoint (`streamjob checkpoints <uri>` lists them)"
        ) from err
    return decode_metadata(data, source=store.uri(key))


def load_snapshot(open_store: Opener, uri: str | StorageUri) -> LoadedSnapshot:
    """Loads the snapshot at ``uri`` (its directory or its ``_metadata``)."""
    directory = snapshot_dir_of(parse_storage_uri(uri))
    store = open_store(directory)
    try:
        meta = read_metadata(store, METADATA_FILE)
    except ObjectNotFoundError as err:
        raise MetadataError(
            f"no snapshot at {directory}: {store.uri(METADATA_FILE)} does not exist (a "
            "checkpoint without _metadata never completed); give a savepoint or completed "
            "checkpoint directory or its _metadata file"
        ) from err
    metadata_uri = directory.join(METADATA_FILE)
    return LoadedSnapshot(meta, str(metadata_uri), str(snapshot_base(metadata_uri, meta.kind)))
