"""``ObjectStore`` on a local (or mounted) filesystem: the embedded default of ``streamjob run``.

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the directory;
or, for the files of a snapshot, fsync of just those files and their directories at ``flush``);
``if_absent`` uses a hard link, which fails atomically when the target exists. Multipart uploads are
emulated with a staging directory ``<root>/.streamjob-uploads/<upload id>/``. Empty directories
left by deletes are removed so that ``list_dirs`` matches S3's view. Opened by ``stores.open_store``.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.object_store import (
    RESERVED_PREFIX,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PendingUpload,
    UploadedPart,
    check_key,
    check_prefix,
    same_scheme,
    too_large,
)
from streamjob.worker.storage.uri import StorageUri

_T = TypeVar("_T")
_TMP_MARK = ".sjtmp-"
_UPLOADS = f"{RESERVED_PREFIX}uploads"


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)


def _create_exclusive(path: Path, data: bytes) -> bool:
    """``if_absent`` on filesystems without hard links: exclusive create (not atomic for readers)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _sync_files(files: list[Path], dirs: set[Path]) -> None:
    """An fsync of each of ``files``, then of each of ``dirs`` (deepest first).

    ``dirs`` are the directories that got a new entry since they were last synced: the files'
    parents and the parents of directories created for them. Directories that only lead to those
    (the job's root, say) have not changed and need no sync. A ``syncfs`` of the whole file system
    was tried first and costs 15-30 ms on a shared VM, because it also writes out every other
    process's dirty pages.
    """
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # deleted since (an aborted checkpoint): nothing to make durable
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        _fsync_dir(directory)


def _make_parents(path: Path, root: Path) -> set[Path]:
    """Creates ``path``'s missing parent directories; returns the directories that got a new entry."""
    changed = {path.parent}
    missing = path.parent
    while not missing.exists() and missing != root and root in missing.parents:
        changed.add(missing.parent)
        missing = missing.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return changed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mtime(stat: os.stat_result) -> datetime:
    return datetime.fromtimestamp(stat.st_mtime, tz=UTC)


class FileObjectStore(ObjectStore):
    """Objects as files below a root directory."""

    def __init__(self, root: StorageUri) -> None:
        """Binds the store to a ``file://`` root (created lazily on the first write)."""
        if root.scheme != "file":
            raise StorageError(f"FileObjectStore needs a file:// root, got {root}")
        self._root = root
        self._dir = Path(root.path)
        self._unsynced: set[Path] = set()
        self._unsynced_dirs: set[Path] = set()
        self._unsynced_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # a flush returns only once every earlier write is durable

    @property
    def root(self) -> StorageUri:
        """The ``file://`` directory keys are relative to."""
        return self._root

    def at(self, uri: StorageUri) -> ObjectStore:
        """A store rooted at another ``file://`` directory (other schemes: ``StoreFactory.open``)."""
        return FileObjectStore(same_scheme(self._root, uri))

    def _path(self, key: str) -> Path:
        return self._dir.joinpath(*check_key(key).split("/"))

    def _guard(self, action: str, target: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except StorageError:
            raise
        except PermissionError as err:
            raise StorageError(
                f"permission denied to {action} {target}: {err.strerror}; check the "
                "directory's owner and mode (the job's user must be able to write it)"
            ) from err
        except OSError as err:
            raise StorageError(f"cannot {action} {target}: {err.strerror or err}") from err

    # Single objects

    def put(self, key: str, data: bytes, *, if_absent: bool = False, durable: bool = True) -> bool:
        """Writes via a temporary file + fsync + rename (or link for ``if_absent``).

        ``durable=False`` skips the fsyncs; ``flush()`` later syncs every such file and the
        directories above it, so that a writer that is not done yet never waits for the disk.
        """
        path = self._path(key)
        changed: set[Path] = set()
        written = self._guard("write", self.uri(key), lambda: self._write_file(path, data, if_absent, durable, changed))
        if not durable:
            with self._unsynced_lock:
                self._unsynced.add(path)
                self._unsynced_dirs |= changed
        return written

    def flush(self) -> None:
        """Makes the files written with ``durable=False`` durable (fsync of each and of their directories)."""
        with self._flush_lock:  # another thread's flush may be syncing files this caller wrote
            with self._unsynced_lock:
                files, self._unsynced = self._unsynced, set()
                dirs, self._unsynced_dirs = self._unsynced_dirs, set()
            if files or dirs:
                self._guard("sync", str(self._root), lambda: _sync_files(sorted(files), dirs))

    def _write_file(
        self, path: Path, data: bytes, if_absent: bool, durable: bool = True, changed: set[Path] | None = None
    ) -> bool:
        """Writes ``path`` atomically; adds the directories that got a new entry to ``changed``."""
        tmp = path.with_name(f"{_TMP_MARK}{path.name}.{uuid.uuid4().hex}")
        new_entries: set[Path] = set()
        for attempt in range(3):
            new_entries |= _make_parents(path, self._dir)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileNotFoundError:  # a concurrent delete removed the (empty) directory
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                except OSError as err:
                    if err.errno not in _NO_HARD_LINKS:
                        raise
                    return _create_exclusive(path, data)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        if durable:
            for directory in sorted(new_entries, key=lambda d: len(d.parts), reverse=True):
                _fsync_dir(directory)
        elif changed is not None:
            changed |= new_entries
        return True

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Reads the whole file (at most ``max_bytes``: a larger one raises ``ObjectTooLargeError``)."""
        path = self._path(key)

        def read() -> bytes:
            try:
                with path.open("rb") as f:
                    if max_bytes is None:
                        return f.read()
                    size = os.fstat(f.fileno()).st_size
                    data = f.read(max_bytes + 1)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise ObjectNotFoundError(f"{self.uri(key)} does not exist") from None
            if len(data) > max_bytes:
                raise too_large(self.uri(key), max(size, len(data)), max_bytes)
            return data

        return self._guard("read", self.uri(key), read)

    def exists(self, key: str) -> bool:
        """Whether a regular file exists at ``key``."""
        path = self._path(key)
        return self._guard("inspect", self.uri(key), path.is_file)

    def _walk(self, base: Path) -> Iterator[tuple[str, os.stat_result]]:
        if not base.is_dir():
            return
        for current, dirs, files in os.walk(base):
            rel_dir = os.path.relpath(current, self._dir)
            if rel_dir == ".":
                dirs[:] = [d for d in dirs if not d.startswith(RESERVED_PREFIX)]
            for name in files:
                if name.startswith(_TMP_MARK):
                    continue
                full = os.path.join(current, name)
                try:
                    stat = os.stat(full)
                except FileNotFoundError:
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                yield rel.replace(os.sep, "/"), stat

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Walks the deepest directory that contains ``prefix`` and filters by it."""
        check_prefix(prefix)
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._dir.joinpath(*base_rel.split("/")) if base_rel else self._dir

        def walk() -> builtins.list[ObjectInfo]:
            found = [
                ObjectInfo(rel, stat.st_size, _mtime(stat)) for rel, stat in self._walk(base) if rel.startswith(prefix)
            ]
            return sorted(found, key=lambda info: info.key)

        return self._guard("list", self.uri(base_rel), walk)

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """Subdirectories of ``prefix`` (treated as a directory)."""
        rel = check_prefix(prefix).strip("/")
        base = self._dir.joinpath(*rel.split("/")) if rel else self._dir

        def scan() -> builtins.list[str]:
            if not base.is_dir():
                return []
            return sorted(
                entry.name
                for entry in base.iterdir()
                if entry.is_dir() and not (not rel and entry.name.startswith(RESERVED_PREFIX))
            )

        return self._guard("list", self.uri(rel), scan)

    def delete(self, key: str) -> None:
        """Unlinks the file and prunes empty parent directories up to the root."""
        path = self._path(key)

        def remove() -> None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            self._prune(path.parent)

        self._guard("delete", self.uri(key), remove)

    def _prune(self, directory: Path) -> None:
        while directory != self._dir and self._dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, already gone, or busy: stop pruning
                return
            directory = directory.parent

    # Multipart uploads, emulated

    def _staging(self, upload_id: str) -> Path:
        if not upload_id or not all(c in "0123456789abcdef" for c in upload_id):
            raise ObjectNotFoundError(f"unknown upload id {upload_id!r}")
        return self._dir / _UPLOADS / upload_id

    def _staged_key(self, upload_id: str) -> str:
        try:
            return (self._staging(upload_id) / "key").read_text("utf-8")
        except FileNotFoundError:
            raise ObjectNotFoundError(
                f"multipart upload {upload_id} under {self.root} does not exist (completed or aborted already?)"
            ) from None

    def begin_upload(self, key: str) -> str:
        """Creates the staging directory recording the target key."""
        check_key(key)
        upload_id = uuid.uuid4().hex

        def begin() -> str:
            staging = self._staging(upload_id)
            staging.mkdir(parents=True)
            self._write_file(staging / "key", key.encode("utf-8"), False)
            return upload_id

        return self._guard("begin an upload of", self.uri(key), begin)

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> UploadedPart:
        """Stores one part atomically; its etag is the part's sha256."""
        if not 1 <= part_number <= 10000:
            raise StorageError(f"part number {part_number} is outside 1..10000")

        def upload() -> UploadedPart:
            if self._staged_key(upload_id) != key:
                raise ObjectNotFoundError(f"upload {upload_id} is not an upload of {self.uri(key)}")
            self._write_file(self._staging(upload_id) / f"part-{part_number:05d}", data, False)
            return UploadedPart(part_number, hashlib.sha256(data).hexdigest())

        return self._guard("upload a part of", self.uri(key), upload)

    def complete_upload(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> None:
        """Concatenates the listed parts into ``key`` atomically and drops the staging directory."""

        def complete() -> None:
            if self._staged_key(upload_id) != key:
                raise ObjectNotFoundError(f"upload {upload_id} is not an upload of {self.uri(key)}")
            staging = self._staging(upload_id)
            chunks: list[bytes] = []
            for part in sorted(parts, key=lambda p: p.part_number):
                try:
                    data = (staging / f"part-{part.part_number:05d}").read_bytes()
                except FileNotFoundError:
                    raise StorageError(f"part {part.part_number} of upload {upload_id} was never uploaded") from None
                if hashlib.sha256(data).hexdigest() != part.etag:
                    raise StorageError(
                        f"part {part.part_number} of upload {upload_id} does not match "
                        "its etag (a newer upload of that part replaced it)"
                    )
                chunks.append(data)
            self._write_file(self._path(key), b"".join(chunks), False)
            shutil.rmtree(staging, ignore_errors=True)

        self._guard("complete the upload of", self.uri(key), complete)

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Removes the staging directory."""
        try:
            staging = self._staging(upload_id)
        except ObjectNotFoundError:
            return
        self._guard("abort the upload of", self.uri(key), lambda: shutil.rmtree(staging, ignore_errors=True))

    def list_pending_uploads(self, prefix: str = "") -> builtins.list[PendingUpload]:
        """Staging directories whose target key starts with ``prefix``."""
        check_prefix(prefix)
        uploads_dir = self._dir / _UPLOADS

        def scan() -> builtins.list[PendingUpload]:
            if not uploads_dir.is_dir():
                return []
            found: list[PendingUpload] = []
            for entry in uploads_dir.iterdir():
                try:
                    key = (entry / "key").read_text("utf-8")
                    initiated = _mtime(entry.stat())
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if key.startswith(prefix):
                    found.append(PendingUpload(key, entry.name, initiated))
            return sorted(found, key=lambda up: (up.key, up.initiated))

        return self._guard("list uploads under", str(self.root), scan)
