"""What a snapshot writes and how it is found again: state handles and the writer/reader protocols.

State backends (``streamjob.worker.state``) produce handles through a ``SnapshotWriter`` supplied
by the checkpoint storage (``streamjob.worker.storage``); the coordinator collects the handles into
``_metadata``. Paths are relative to the snapshot's base (the jobId root for checkpoints, the
savepoint directory for savepoints), so a savepoint can be copied elsewhere and still restore.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class StateHandle(BaseModel):
    """One file of state: where it is, how big, its checksum and (for keyed state) its key groups."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str
    key_group_start: int | None = None
    key_group_end: int | None = None  # inclusive
    shared: bool = False


class SnapshotWriter(Protocol):
    """Writes the files of one subtask's snapshot; safe to call from a background thread."""

    @property
    def checkpoint_id(self) -> int: ...

    @property
    def is_savepoint(self) -> bool:
        """Savepoints must be self-contained: never reference shared files."""
        ...

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        """Writes a private file of this snapshot (``chk-<n>/<name>``)."""
        ...

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        """Writes a file that later checkpoints may reference (``shared/<name>``); idempotent."""
        ...

    def shared_exists(self, name: str) -> bool:
        """Whether ``shared/<name>`` was already uploaded (for incremental snapshots)."""
        ...


class SnapshotReader(Protocol):
    """Reads the files a handle points to, verifying size and checksum."""

    def read(self, handle: StateHandle) -> bytes: ...
