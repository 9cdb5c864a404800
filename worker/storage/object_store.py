"""The object-store contract every checkpoint and sink byte goes through, and its value types.

An ``ObjectStore`` is bound to a root URI (a directory for ``file://``, a bucket and key prefix for
``s3://``); keys are ``/``-separated paths relative to that root. Implementations:
``FileObjectStore`` (``file_store.py``) and ``S3ObjectStore`` (``s3_store.py``, the only module that
imports boto3). Callers: ``CheckpointStorage``, discovery, and (for multipart uploads) the
exactly-once file sink. Open one with ``streamjob.worker.storage.stores.open_store``.

Every method may be called from any thread. Every failure is a ``StorageError`` (a missing object
is the subclass ``ObjectNotFoundError``) whose message names the location and the fix.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from streamjob.worker.errors import ConfigError, StorageError
from streamjob.worker.storage.uri import StorageUri, split_segments

RESERVED_PREFIX = ".streamjob-"
"""Keys whose first segment starts with this are the store's own bookkeeping (never listed)."""


class ObjectNotFoundError(StorageError):
    """The object (or multipart upload) does not exist."""


class ObjectTooLargeError(StorageError):
    """The object is larger than the caller's ``max_bytes`` (it was not read)."""


def too_large(location: str, size: int, max_bytes: int) -> ObjectTooLargeError:
    """The error for an object of ``size`` bytes read with a limit of ``max_bytes``."""
    return ObjectTooLargeError(f"{location} has {size} bytes, more than the {max_bytes} this reader accepts")


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing; ``key`` is relative to the store's root."""

    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class UploadedPart:
    """One uploaded part of a multipart upload; keep these (e.g. in sink state) to complete it."""

    part_number: int
    etag: str


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was begun and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


def check_key(key: str) -> str:
    """Validates a relative object key (no leading ``/``, no empty/``.``/``..`` segments)."""
    if not key or key.startswith("/"):
        raise StorageError(f"invalid object key {key!r}: keys are non-empty and relative to the store root")
    try:
        segments = split_segments(key, what="object key")
    except ConfigError as err:
        raise StorageError(str(err)) from None
    if segments[0].startswith(RESERVED_PREFIX):
        raise StorageError(f"invalid object key {key!r}: {RESERVED_PREFIX}* is reserved for the store")
    return key


def check_prefix(prefix: str) -> str:
    """Validates a listing prefix: empty, or a key prefix (a trailing ``/`` is allowed)."""
    if prefix:
        check_key(prefix.rstrip("/") or "/")
    return prefix


class ObjectStore(abc.ABC):
    """Keyed byte objects under one root; thread-safe."""

    @property
    @abc.abstractmethod
    def root(self) -> StorageUri:
        """The URI every key is relative to."""

    def uri(self, key: str = "") -> str:
        """The full URI of ``key`` (of the root when empty)."""
        return str(self.root.join(key)) if key else str(self.root)

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, if_absent: bool = False, durable: bool = True) -> bool:
        """Writes ``data`` atomically (readers see the old object or the new one, never a part).

        With ``if_absent`` the write happens only if ``key`` does not exist yet; returns False
        (writing nothing) when it did. Returns True when the object was written. With
        ``durable=False`` the write may stay in the OS cache until ``flush()`` (S3 writes are
        always durable).
        """

    def flush(self) -> None:  # noqa: B027 - durable stores have nothing to do
        """Makes every ``durable=False`` write of this store durable."""

    def warm_up(self) -> None:  # noqa: B027 - local stores have nothing to prepare
        """Does ahead of the first write what that write would pay for (a client, a connection)."""

    @abc.abstractmethod
    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ``ObjectNotFoundError`` if it does not exist.

        With ``max_bytes``, a larger object raises ``ObjectTooLargeError`` before its body is read
        (files a writer to the bucket controls, such as ``_metadata``, cannot exhaust memory).
        """

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive), sorted by key."""

    @abc.abstractmethod
    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """Names of the "directories" directly under ``prefix`` (``""`` = root), sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Deletes one object; deleting a missing object is not an error."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """Deletes several objects (implementations batch this)."""
        for key in keys:
            self.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every object under ``prefix`` (use a trailing ``/`` for a directory); returns the count."""
        keys = [info.key for info in self.list(prefix)]
        self.delete_many(keys)
        return len(keys)

    @abc.abstractmethod
    def at(self, uri: StorageUri) -> ObjectStore:
        """A store rooted at ``uri``, sharing this store's connection settings (and client, if any).

        ``uri`` has this store's scheme (``same_scheme``); a store of another kind comes from
        ``StoreFactory.open``, so that no store implementation depends on another.
        """

    # Multipart uploads (S3 semantics: parts of at least 5 MiB except the last on real S3).

    @abc.abstractmethod
    def begin_upload(self, key: str) -> str:
        """Starts a multipart upload of ``key``; returns its upload id."""

    @abc.abstractmethod
    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> UploadedPart:
        """Uploads part ``part_number`` (1-based; re-uploading a number replaces it)."""

    @abc.abstractmethod
    def complete_upload(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> None:
        """Makes ``key`` the concatenation of ``parts`` (in part-number order), atomically.

        An unknown upload id raises a ``StorageError`` (usually ``ObjectNotFoundError``); completing an
        already completed upload may succeed again (S3) or raise. After a crash between completing and
        recording it, the caller checks ``exists(key)`` to tell "already completed" from "lost".
        """

    @abc.abstractmethod
    def abort_upload(self, key: str, upload_id: str) -> None:
        """Discards an upload and its parts; aborting an unknown upload is not an error."""

    @abc.abstractmethod
    def list_pending_uploads(self, prefix: str = "") -> builtins.list[PendingUpload]:
        """Uploads begun under ``prefix`` and neither completed nor aborted, sorted by key."""


def same_scheme(root: StorageUri, uri: StorageUri) -> StorageUri:
    """``uri``, if it has ``root``'s scheme (``ObjectStore.at``); otherwise a ``ConfigError`` with the fix."""
    if uri.scheme != root.scheme:
        raise ConfigError(
            f"{uri} is not a {root.scheme}:// location, so the store at {root} cannot open it; "
            "open stores of another kind with StoreFactory.open (storage/stores.py)"
        )
    return uri
