"""The storage side of ``SnapshotWriter`` / ``SnapshotReader`` (see ``snapshot/handles.py``).

``CheckpointStorage.writer`` hands a ``StorageSnapshotWriter`` to a subtask's state backend, which
calls it from its background snapshot thread; ``CheckpointStorage.reader`` hands a
``StorageSnapshotReader`` to restores. Handle paths are keys relative to the snapshot base (jobId
root for checkpoints, savepoint directory for savepoints); every handle records size and sha256, and
every read verifies both (a mismatch is a ``CorruptStateError``, defined in ``errors`` so that the state
modules raise the same error for a file that passes its checksum but does not decode).
"""

from __future__ import annotations

import hashlib
import threading

from streamjob.worker.errors import CorruptStateError, StorageError
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.storage.object_store import ObjectNotFoundError, ObjectStore, check_key
from streamjob.worker.storage.uri import StorageUri

__all__ = ["CorruptStateError", "StorageSnapshotReader", "StorageSnapshotWriter"]


class StorageSnapshotWriter:
    """Writes one subtask's files of one checkpoint or savepoint; thread-safe.

    Private files go under ``private_prefix`` (``chk-<n>/<uid>/<subtask>/`` for checkpoints,
    ``<uid>/<subtask>/`` for savepoints). Shared files of checkpoints go to ``shared_prefix``
    (``shared/``); a savepoint has no shared prefix, so its "shared" files are private copies
    (``<uid>/<subtask>/shared/<name>``) and the savepoint stays self-contained.
    """

    def __init__(self, store: ObjectStore, checkpoint_id: int, private_prefix: str, shared_prefix: str | None) -> None:
        """``store`` is rooted at the snapshot base; ``shared_prefix`` None makes a savepoint writer."""
        self._store = store
        self._checkpoint_id = checkpoint_id
        self._private = private_prefix
        self._shared = shared_prefix
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._handles: list[StateHandle] = []

    @property
    def checkpoint_id(self) -> int:
        """The checkpoint (or savepoint) id being written."""
        return self._checkpoint_id

    @property
    def is_savepoint(self) -> bool:
        """True when shared files must not be referenced (the snapshot is self-contained)."""
        return self._shared is None

    @property
    def base_uri(self) -> str:
        """The URI the handle paths are relative to."""
        return str(self._store.root)

    def _claim(self, key: str) -> None:
        check_key(key)
        with self._lock:
            if key in self._keys:
                raise StorageError(
                    f"{self._store.uri(key)} was already written by this snapshot: state "
                    "file names must be unique per subtask and snapshot"
                )
            self._keys.add(key)

    def _record(self, handle: StateHandle) -> StateHandle:
        with self._lock:
            self._handles.append(handle)
        return handle

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        """Writes a private file and returns its handle (key groups inclusive)."""
        key = self._private + name
        self._claim(key)
        self._store.put(key, data, durable=False)
        start, end = key_groups if key_groups is not None else (None, None)
        return self._record(
            StateHandle(
                path=key,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                key_group_start=start,
                key_group_end=end,
            )
        )

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        """Uploads ``shared/<name>`` unless present (names must identify their content)."""
        if self._shared is None:
            key = f"{self._private}shared/{name}"
            self._claim(key)
            self._store.put(key, data)
            shared = False
        else:
            key = self._shared + name
            check_key(key)
            self._store.put(key, data, if_absent=True)
            shared = True
        return self._record(
            StateHandle(path=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), shared=shared)
        )

    def shared_exists(self, name: str) -> bool:
        """Whether ``shared/<name>`` exists; always False for savepoints."""
        if self._shared is None:
            return False
        return self._store.exists(self._shared + name)

    def flush(self) -> None:
        """Makes this snapshot's private files durable (call before acknowledging the checkpoint)."""
        self._store.flush()

    def written(self) -> list[StateHandle]:
        """Every handle returned so far, in write order."""
        with self._lock:
            return list(self._handles)


class StorageSnapshotReader:
    """Reads state files relative to a snapshot base, verifying size and sha256."""

    def __init__(self, store: ObjectStore) -> None:
        """``store`` is rooted at the snapshot base."""
        self._store = store

    @property
    def base(self) -> StorageUri:
        """The URI the handle paths are relative to."""
        return self._store.root

    def read(self, handle: StateHandle) -> bytes:
        """The file's bytes; ``CorruptStateError`` on a size or checksum mismatch."""
        try:
            key = check_key(handle.path)
        except StorageError as err:
            raise CorruptStateError(f"the snapshot at {self._store.root} holds an invalid state path: {err}") from err
        location = self._store.uri(key)
        try:
            data = self._store.get(key)
        except ObjectNotFoundError as err:
            raise CorruptStateError(
                f"state file {location} referenced by the snapshot's _metadata is missing; "
                "the snapshot is incomplete, restore an older one"
            ) from err
        if len(data) != handle.size:
            raise CorruptStateError(
                f"state file {location} has {len(data)} bytes but its handle records "
                f"{handle.size}: the file is truncated or was replaced"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != handle.sha256:
            raise CorruptStateError(
                f"state file {location} does not match its sha256 (expected "
                f"{handle.sha256[:12]}..., found {digest[:12]}...): the file is corrupted"
            )
        return data
