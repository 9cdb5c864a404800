"""Opening object stores from URIs: ``open_store`` and the client-sharing ``StoreFactory``.

``open_store(uri, s3)`` returns an ``ObjectStore`` rooted at ``uri``: keys passed to it are
relative to that URI. ``StoreFactory`` does the same for many URIs while sharing one S3 client per
factory; ``CheckpointStorage``, discovery and the CLI hold one. The S3 adapter (and so boto3) is
imported only when an ``s3://`` URI is opened.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from streamjob.worker.storage.file_store import FileObjectStore
from streamjob.worker.storage.object_store import ObjectStore
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

if TYPE_CHECKING:
    from streamjob.worker.storage.s3_store import S3ClientHolder


class StoreFactory:
    """Opens stores for URIs; every ``s3://`` store it opens shares one lazily created client."""

    def __init__(self, s3: S3Settings | None = None) -> None:
        """``s3`` defaults to ``S3Settings.from_env()``, read when the first S3 URI is opened."""
        self._settings = s3
        self._holder: S3ClientHolder | None = None
        self._lock = threading.Lock()

    def open(self, uri: str | StorageUri) -> ObjectStore:
        """A store rooted at ``uri`` (``ConfigError`` for a malformed URI)."""
        parsed = parse_storage_uri(uri)
        if parsed.scheme == "file":
            return FileObjectStore(parsed)
        from streamjob.worker.storage.s3_store import S3ClientHolder, S3ObjectStore

        with self._lock:
            if self._holder is None:
                self._holder = S3ClientHolder(self._settings or S3Settings.from_env())
            holder = self._holder
        return S3ObjectStore(parsed, holder)


def open_store(uri: str | StorageUri, s3: S3Settings | None = None) -> ObjectStore:
    """An ``ObjectStore`` rooted at ``uri``; ``s3`` defaults to ``S3Settings.from_env()``."""
    return StoreFactory(s3).open(uri)
