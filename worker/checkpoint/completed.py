"""A completed checkpoint or savepoint: what ``PendingCheckpoint.finalize`` yields, immutable.

Built once its ``_metadata`` is written (Flink's ``CompletedCheckpoint``). The coordinator records
it in the ``CompletedCheckpointStore`` (retention), in the stats and hands it to the JobMaster's
listeners; nothing changes it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.storage.layout import METADATA_FILE


@dataclass(frozen=True)
class CheckpointPhases:
    """How long the checkpoint took at the tasks: the slowest task's phases, the CPU summed over tasks."""

    alignment_ms: float = 0.0
    sync_ms: float = 0.0
    async_ms: float = 0.0
    cpu_ms: float = 0.0


@dataclass(frozen=True)
class CompletedCheckpoint:
    """Checkpoint ``id`` after its ``_metadata`` (at ``location``) was written."""

    id: int
    kind: CheckpointKind
    trigger_ms: int
    completion_ms: int
    size: int
    """Bytes of every file the checkpoint references (the full state size)."""
    location: str
    """The ``_metadata`` URI."""
    stop: bool = False
    """A stop-with-savepoint: the job ends after it."""
    request_id: str | None = None
    """The ``POST /savepoints`` request it answers, if any."""
    phases: CheckpointPhases = CheckpointPhases()
    incremental_size: int | None = None
    """Bytes this checkpoint wrote (``finalize.written_size``); None when not known."""
    shared_files: frozenset[str] = frozenset()
    """The ``shared/`` files it references (incremental snapshots)."""

    @property
    def is_savepoint(self) -> bool:
        """Whether it is a savepoint (self-contained; retention never discards it)."""
        return self.kind is CheckpointKind.SAVEPOINT

    @property
    def duration_ms(self) -> int:
        """From the trigger to the written ``_metadata``."""
        return max(0, self.completion_ms - self.trigger_ms)

    @property
    def directory(self) -> str:
        """The snapshot's directory (``.../chk-<n>`` or ``.../savepoint-<id>``)."""
        suffix = f"/{METADATA_FILE}"
        return self.location[: -len(suffix)] if self.location.endswith(suffix) else self.location

    @property
    def commits_side_effects(self) -> bool:
        """Whether completing it notifies the tasks (two-phase-commit sinks commit): see ``PendingCheckpoint``."""
        return not self.is_savepoint or self.stop
