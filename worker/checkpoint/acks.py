"""What a task acknowledges for a checkpoint, and the key naming the task.

Shared by the pending checkpoint and the metadata builder (``pending.py``, ``finalize.py``), below both
so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamjob.worker.snapshot.handles import StateHandle

TaskKey = tuple[str, int]  # (vertex id, subtask index)


@dataclass
class TaskAck:
    """One task's snapshot: per operator uid, its keyed, operator and channel state handles."""

    states: dict[str, dict[str, list[StateHandle]]]
    stats: dict[str, float]
    positions: list[Any]
