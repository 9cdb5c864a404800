"""In-memory fakes of the snapshot writer/reader for the state tests (no tests here)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.errors import StorageError
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.backend import KeyedBackendContext, KeyedStateBackend
from streamjob.worker.state.factory import create_keyed_backend
from streamjob.worker.state.key_groups import key_group_range

pytestmark = pytest.mark.unit


@dataclass
class MemoryStorage:
    files: dict[str, bytes] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)

    def writer(self, checkpoint_id: int, *, savepoint: bool = False) -> MemoryWriter:
        return MemoryWriter(self, checkpoint_id, savepoint)

    def reader(self) -> MemoryReader:
        return MemoryReader(self)

    def uploaded_bytes(self) -> int:
        return sum(len(self.files[p]) for p in self.uploads)


@dataclass
class MemoryWriter:
    storage: MemoryStorage
    _checkpoint_id: int
    _savepoint: bool

    @property
    def checkpoint_id(self) -> int:
        return self._checkpoint_id

    @property
    def is_savepoint(self) -> bool:
        return self._savepoint

    def _put(self, path: str, data: bytes, **extra: Any) -> StateHandle:
        assert path not in self.storage.files or self.storage.files[path] == data, path
        self.storage.files[path] = data
        self.storage.uploads.append(path)
        return StateHandle(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **extra)

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        prefix = "savepoint" if self._savepoint else f"chk-{self._checkpoint_id}"
        kg = {} if key_groups is None else {"key_group_start": key_groups[0], "key_group_end": key_groups[1]}
        return self._put(f"{prefix}/{name}", data, **kg)

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        assert not self._savepoint, "savepoints must be self-contained"
        return self._put(f"shared/{name}", data, shared=True)

    def shared_exists(self, name: str) -> bool:
        return f"shared/{name}" in self.storage.files


@dataclass
class MemoryReader:
    storage: MemoryStorage

    def read(self, handle: StateHandle) -> bytes:
        data = self.storage.files.get(handle.path)
        if data is None:
            raise StorageError(f"missing {handle.path}")
        assert len(data) == handle.size
        assert hashlib.sha256(data).hexdigest() == handle.sha256
        return data


def make_backend(
    kind: str,
    tmp_path: Path,
    *,
    parallelism: int = 1,
    index: int = 0,
    max_parallelism: int = 128,
    incremental: bool = False,
    uid: str = "op",
    **extra: Any,
) -> KeyedStateBackend:
    ctx = KeyedBackendContext(
        operator_uid=uid,
        subtask_index=index,
        parallelism=parallelism,
        max_parallelism=max_parallelism,
        key_group_range=key_group_range(max_parallelism, parallelism, index),
        local_dir=tmp_path / f"{kind}-{uid}-{parallelism}-{index}-{id(extra)}",
        incremental=incremental,
        **extra,
    )
    return create_keyed_backend(kind, ctx)
