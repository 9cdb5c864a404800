"""Task-local recovery (Flink's ``setLocalRecovery``): a local copy of every checkpoint file.

When enabled, each file a task writes to checkpoint storage is also kept on the worker's disk;
a restore on the same machine reads the local copy when its size and checksum match the handle
and falls back to remote storage otherwise, so a local restart does not download its state
again. Savepoints are never cached (they are meant to move). Used by ``task`` and ``slot``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from streamjob.worker.snapshot.handles import SnapshotReader, SnapshotWriter, StateHandle

log = logging.getLogger(__name__)


def local_recovery_root(namespace: str, name: str, job_id: str) -> Path:
    """Where one lineage's local copies live (stable across restarts of the slot processes)."""
    return Path(tempfile.gettempdir()) / "streamjob-local-recovery" / namespace / name / job_id


def _base_dir(root: Path, base_uri: str) -> Path:
    return root / hashlib.sha256(base_uri.encode()).hexdigest()[:16]


class LocalCopyWriter:
    """A ``SnapshotWriter`` that also keeps each file locally."""

    def __init__(self, inner: SnapshotWriter, root: Path, base_uri: str) -> None:
        self.inner = inner
        self.dir = _base_dir(root, base_uri)

    @property
    def checkpoint_id(self) -> int:
        return self.inner.checkpoint_id

    @property
    def is_savepoint(self) -> bool:
        return self.inner.is_savepoint

    def _keep(self, handle: StateHandle, data: bytes) -> StateHandle:
        target = self.dir / handle.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return handle

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        return self._keep(self.inner.write(name, data, key_groups=key_groups), data)

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        return self._keep(self.inner.write_shared(name, data), data)

    def shared_exists(self, name: str) -> bool:
        return self.inner.shared_exists(name)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)


class LocalFirstReader:
    """A ``SnapshotReader`` that prefers a verified local copy.

    The slot's log says so the first time a restore reads a local copy and the first time it has to
    fetch from storage instead (a copy missing, or not matching its handle): one line each, with the
    counts so far, so an operator can tell whether local recovery took effect.
    """

    def __init__(self, inner: SnapshotReader, root: Path, base_uri: str) -> None:
        self.inner = inner
        self.dir = _base_dir(root, base_uri)
        self.local_hits = 0
        self.remote_reads = 0

    def read(self, handle: StateHandle) -> bytes:
        path = self.dir / handle.path
        try:
            data = path.read_bytes()
        except OSError:
            return self._remote(handle, "no local copy")
        if len(data) == handle.size and hashlib.sha256(data).hexdigest() == handle.sha256:
            self.local_hits += 1
            if self.local_hits == 1:
                log.info("local recovery: restoring state from the local copy in %s", self.dir)
            return data
        return self._remote(handle, "the local copy does not match its checksum")

    def _remote(self, handle: StateHandle, why: str) -> bytes:
        self.remote_reads += 1
        if self.remote_reads == 1:
            log.info("local recovery: %s of %s; reading it from checkpoint storage", why, handle.path)
        return self.inner.read(handle)


def prune_local_copies(root: Path, base_uri: str, keep_from_checkpoint: int) -> None:
    """Deletes local copies of checkpoints older than ``keep_from_checkpoint`` (shared files stay)."""
    directory = _base_dir(root, base_uri)
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.name.startswith("chk-"):
            try:
                n = int(child.name[4:])
            except ValueError:
                continue
            if n < keep_from_checkpoint:
                shutil.rmtree(child, ignore_errors=True)
