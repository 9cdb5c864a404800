"""Checkpoint statistics for ``GET /checkpoints`` and the metrics: counts, latest, bounded history.

The coordinator records every completed checkpoint (``CheckpointRecord.of_completed``) and every
failed one (``CheckpointRecord.of_failure``); the JobMaster's REST handler and metrics read them.
A record's ``kind`` and ``status`` are string enums: their JSON is the strings the API always had.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.failures import CheckpointFailure
from streamjob.worker.protocol.rest import CheckpointKind, CheckpointStatus


@dataclass
class CheckpointRecord:
    """One finished (or failed) checkpoint as reported to users."""

    id: int
    kind: CheckpointKind
    status: CheckpointStatus
    trigger_ms: int
    duration_ms: int
    size: int = 0
    location: str | None = None
    failure: str | None = None
    alignment_ms: float = 0.0
    sync_ms: float = 0.0
    async_ms: float = 0.0
    cpu_ms: float = 0.0
    """CPU time the tasks spent on checkpoint work since their previous acknowledgement, summed over tasks."""
    incremental_size: int | None = None
    """Bytes this checkpoint wrote (``size`` is the full state it references); None when not known."""

    def __post_init__(self) -> None:
        """Accepts the enums' strings too (``"savepoint"``, ``"FAILED"``); anything else is a ``ValueError``."""
        self.kind = CheckpointKind(self.kind)
        self.status = CheckpointStatus(self.status)

    @classmethod
    def of_completed(cls, completed: CompletedCheckpoint) -> CheckpointRecord:
        """The record of a completed checkpoint or savepoint."""
        phases = completed.phases
        return cls(
            completed.id,
            completed.kind,
            CheckpointStatus.COMPLETED,
            completed.trigger_ms,
            completed.duration_ms,
            completed.size,
            completed.location,
            None,
            phases.alignment_ms,
            phases.sync_ms,
            phases.async_ms,
            phases.cpu_ms,
            completed.incremental_size,
        )

    @classmethod
    def of_failure(cls, failure: CheckpointFailure, duration_ms: int) -> CheckpointRecord:
        """The record of an aborted checkpoint or savepoint."""
        return cls(
            failure.checkpoint_id,
            failure.kind,
            CheckpointStatus.FAILED,
            failure.trigger_ms,
            duration_ms,
            failure=failure.message,
        )


class CheckpointStats:
    """Counts and the last ``history`` checkpoints."""

    def __init__(self, history: int = 50) -> None:
        self.completed = 0
        self.failed = 0
        self.restored_from: str | None = None
        self.history: deque[CheckpointRecord] = deque(maxlen=history)
        self.latest_completed: CheckpointRecord | None = None
        self.latest_savepoint: CheckpointRecord | None = None
        self.durations_ms: deque[int] = deque(maxlen=1000)

    def record(self, rec: CheckpointRecord) -> None:
        """Adds a finished checkpoint."""
        self.history.appendleft(rec)
        if rec.status is CheckpointStatus.COMPLETED:
            self.completed += 1
            self.durations_ms.append(rec.duration_ms)
            if rec.kind is CheckpointKind.SAVEPOINT:
                self.latest_savepoint = rec
            else:
                self.latest_completed = rec
        else:
            self.failed += 1

    def percentile(self, q: float) -> float | None:
        """Duration percentile of completed checkpoints (q in 0..1)."""
        if not self.durations_ms:
            return None
        ordered = sorted(self.durations_ms)
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    def to_json(self, in_progress: int) -> dict[str, Any]:
        """The body of ``GET /checkpoints``."""
        return {
            "counts": {"completed": self.completed, "failed": self.failed, "in_progress": in_progress},
            "latest": {
                "completed": asdict(self.latest_completed) if self.latest_completed else None,
                "savepoint": asdict(self.latest_savepoint) if self.latest_savepoint else None,
                "restored_from": self.restored_from,
            },
            "summary": {"duration_ms_p50": self.percentile(0.5), "duration_ms_p99": self.percentile(0.99)},
            "history": [asdict(r) for r in self.history],
        }
