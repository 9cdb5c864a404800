"""In-memory checkpoint storage for the test kit: ``InMemoryStorage`` opens ``MemoryObjectStore``s.

Part of the public test kit (``streamjob.worker.testing``). ``InMemoryStorage`` is a ``StoreFactory``
whose stores keep their objects in one dict instead of files or S3: give it to
``run_in_process(env, storage=InMemoryStorage())`` and the JobMaster and every slot of the run write
and read their checkpoints, ``_metadata`` and lineage there (through the real ``CheckpointStorage``,
layout, discovery and retention code); give the same object to a later run with
``restore="latest"`` to resume. ``checkpoint_storage(...)`` binds one jobId's ``CheckpointStorage`` over
it, which serves the storage views (``WorkerStorageView``, ``CoordinatorStorageView``,
``JobStorageView``; ``views`` hands them out typed) to unit tests of the parts that take them. URIs
are names only here: nothing is read from or written to the path or bucket they name.

``MemoryObjectStore`` keeps the ``ObjectStore`` contract (atomic puts, ``if_absent``, sorted
listings, hidden ``.streamjob-*`` keys, multipart uploads, ``ObjectNotFoundError`` and
``ObjectTooLargeError``), so code that passes with it also meets what file and S3 stores promise.
"""

from __future__ import annotations

import builtins
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamjob.worker.storage.checkpoint_storage import (
    CheckpointStorage,
    CoordinatorStorageView,
    JobStorageLocation,
    JobStorageView,
    WorkerStorageView,
)
from streamjob.worker.storage.object_store import (
    RESERVED_PREFIX,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PendingUpload,
    UploadedPart,
    check_key,
    check_prefix,
    too_large,
)
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

__all__ = ["InMemoryStorage", "MemoryObjectStore"]


@dataclass
class _Upload:
    key: StorageUri
    initiated: datetime
    parts: dict[int, bytes] = field(default_factory=dict)


class _Objects:
    """The objects of one ``InMemoryStorage``, by absolute URI; every store it opens shares them."""

    def __init__(self) -> None:
        self.data: dict[StorageUri, tuple[bytes, datetime]] = {}
        self.uploads: dict[str, _Upload] = {}
        self.lock = threading.Lock()


class MemoryObjectStore(ObjectStore):
    """An ``ObjectStore`` rooted at ``root`` over a shared dict; thread-safe."""

    def __init__(self, root: StorageUri, objects: _Objects) -> None:
        """``objects``: the dict shared by every store of one ``InMemoryStorage``."""
        self._root = root
        self._objects = objects

    @property
    def root(self) -> StorageUri:
        return self._root

    def _at(self, key: str) -> StorageUri:
        return self._root.join(check_key(key))

    def _relative(self, uri: StorageUri) -> str | None:
        rel = uri.relative_to(self._root)
        if not rel or rel.split("/", 1)[0].startswith(RESERVED_PREFIX):
            return None
        return rel

    def put(self, key: str, data: bytes, *, if_absent: bool = False, durable: bool = True) -> bool:
        where = self._at(key)
        with self._objects.lock:
            if if_absent and where in self._objects.data:
                return False
            self._objects.data[where] = (bytes(data), datetime.now(UTC))
        return True

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        where = self._at(key)
        with self._objects.lock:
            found = self._objects.data.get(where)
        if found is None:
            raise ObjectNotFoundError(f"{where} does not exist")
        if max_bytes is not None and len(found[0]) > max_bytes:
            raise too_large(str(where), len(found[0]), max_bytes)
        return found[0]

    def exists(self, key: str) -> bool:
        where = self._at(key)
        with self._objects.lock:
            return where in self._objects.data

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        with self._objects.lock:
            items = list(self._objects.data.items())
        found = []
        for uri, (data, modified) in items:
            rel = self._relative(uri)
            if rel is not None and rel.startswith(prefix):
                found.append(ObjectInfo(rel, len(data), modified))
        return sorted(found, key=lambda info: info.key)

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        check_prefix(prefix)
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        names = set()
        for info in self.list(base):
            rest = info.key[len(base) :]
            if "/" in rest:
                names.add(rest.split("/", 1)[0])
        return sorted(names)

    def delete(self, key: str) -> None:
        where = self._at(key)
        with self._objects.lock:
            self._objects.data.pop(where, None)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def at(self, uri: StorageUri) -> ObjectStore:
        return MemoryObjectStore(uri, self._objects)

    def begin_upload(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        with self._objects.lock:
            self._objects.uploads[upload_id] = _Upload(self._at(key), datetime.now(UTC))
        return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self._objects.uploads.get(upload_id)
        if upload is None or upload.key != self._at(key):
            raise ObjectNotFoundError(f"no multipart upload {upload_id} of {self._at(key)}")
        return upload

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> UploadedPart:
        with self._objects.lock:
            self._upload(key, upload_id).parts[part_number] = bytes(data)
        return UploadedPart(part_number, f"{upload_id}-{part_number}")

    def complete_upload(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> None:
        with self._objects.lock:
            upload = self._upload(key, upload_id)
            missing = [p.part_number for p in parts if p.part_number not in upload.parts]
            if missing:
                raise ObjectNotFoundError(f"multipart upload {upload_id} of {upload.key} has no parts {missing}")
            body = b"".join(upload.parts[p.part_number] for p in sorted(parts, key=lambda p: p.part_number))
            self._objects.data[upload.key] = (body, datetime.now(UTC))
            del self._objects.uploads[upload_id]

    def abort_upload(self, key: str, upload_id: str) -> None:
        with self._objects.lock:
            upload = self._objects.uploads.get(upload_id)
            if upload is not None and upload.key == self._at(key):
                del self._objects.uploads[upload_id]

    def list_pending_uploads(self, prefix: str = "") -> builtins.list[PendingUpload]:
        check_prefix(prefix)
        with self._objects.lock:
            uploads = list(self._objects.uploads.items())
        found = []
        for upload_id, upload in uploads:
            rel = self._relative(upload.key)
            if rel is not None and rel.startswith(prefix):
                found.append(PendingUpload(rel, upload_id, upload.initiated))
        return sorted(found, key=lambda p: (p.key, p.upload_id))


class InMemoryStorage(StoreFactory):
    """Opens every URI as a ``MemoryObjectStore`` over this object's dict (no file, no S3 client)."""

    def __init__(self, checkpoints_uri: str = "file:///streamjob-in-memory/checkpoints") -> None:
        """``checkpoints_uri``: the name ``run_in_process`` gives the job's checkpoints URI."""
        super().__init__()
        self.checkpoints_uri = str(parse_storage_uri(checkpoints_uri))
        self._objects = _Objects()

    def open(self, uri: str | StorageUri) -> ObjectStore:
        return MemoryObjectStore(parse_storage_uri(uri), self._objects)

    def object_uris(self) -> builtins.list[str]:
        """Every object's URI, sorted (for assertions on what a run wrote)."""
        with self._objects.lock:
            return sorted(str(uri) for uri in self._objects.data)

    def checkpoint_storage(
        self,
        *,
        job_id: str,
        namespace: str = "local",
        name: str = "in-process",
        savepoints_uri: str | None = None,
    ) -> CheckpointStorage:
        """One jobId's checkpoint storage over this memory (both storage views)."""
        location = JobStorageLocation.parse(
            self.checkpoints_uri,
            savepoints_uri or self.checkpoints_uri + "-savepoints",
            namespace=namespace,
            name=name,
            job_id=job_id,
        )
        return CheckpointStorage(location, stores=self)

    def views(self, *, job_id: str) -> tuple[WorkerStorageView, CoordinatorStorageView, JobStorageView]:
        """The slot's, the coordinator's and the JobMaster's view of one jobId's storage (mypy checks the fit)."""
        storage = self.checkpoint_storage(job_id=job_id)
        return storage, storage, storage
