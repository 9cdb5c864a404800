"""Which checkpoints and shared files retention deletes: a pure planner over what storage holds.

``plan_retention`` keeps the newest ``retained`` valid completed checkpoints and plans the deletion
of older ones (and of incomplete or corrupt checkpoint directories older than the oldest one kept),
and of the shared files that only deleted checkpoints referenced: a shared file referenced by a
retained checkpoint is never deleted. The coordinator's ``CompletedCheckpointStore`` gathers the
entries through a ``RetentionStorage`` (``CheckpointStorage.list_checkpoints``), calls this, and has
the storage execute the plan (``delete_checkpoints``: ``_metadata`` files first, so that a crash
halfway never leaves a checkpoint that looks complete but lost files).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CheckpointEntry:
    """What storage says about one ``chk-<n>`` directory.

    ``shared_refs`` is None unless the checkpoint is completed and its ``_metadata`` parses.
    """

    checkpoint_id: int
    completed: bool
    shared_refs: frozenset[str] | None = None

    @property
    def valid(self) -> bool:
        """Completed with readable metadata: restorable."""
        return self.completed and self.shared_refs is not None


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome of ``plan_retention``."""

    retained_ids: tuple[int, ...]
    """Valid completed checkpoints kept, newest first."""
    delete_ids: tuple[int, ...]
    """Checkpoint directories to delete, ascending."""
    delete_shared: tuple[str, ...]
    """Shared files (paths relative to the jobId root) to delete, sorted."""

    @property
    def empty(self) -> bool:
        """Whether there is nothing to delete."""
        return not self.delete_ids and not self.delete_shared


def plan_retention(entries: Iterable[CheckpointEntry], retained: int) -> RetentionPlan:
    """Plans deletions that keep the newest ``retained`` (>= 1) valid completed checkpoints.

    - A valid checkpoint beyond the newest ``retained`` is deleted.
    - An incomplete or corrupt directory is deleted only when older than the oldest retained one
      (newer ones may still be in progress, or be evidence worth inspecting).
    - A shared file is deleted only if a deleted valid checkpoint referenced it and no retained one
      does. Nothing is deleted while no valid checkpoint exists.
    """
    if retained < 1:
        raise ValueError(f"retained must be at least 1, got {retained}")
    ordered = sorted(entries, key=lambda e: e.checkpoint_id, reverse=True)
    valid = [e for e in ordered if e.valid]
    kept = valid[:retained]
    if not kept:
        return RetentionPlan((), (), ())
    oldest_kept = kept[-1].checkpoint_id
    kept_ids = {e.checkpoint_id for e in kept}
    doomed = [e for e in ordered if e.checkpoint_id not in kept_ids and (e.valid or e.checkpoint_id < oldest_kept)]
    still_referenced: set[str] = set()
    for entry in kept:
        still_referenced |= entry.shared_refs or frozenset()
    unreferenced: set[str] = set()
    for entry in doomed:
        unreferenced |= (entry.shared_refs or frozenset()) - still_referenced
    return RetentionPlan(
        retained_ids=tuple(e.checkpoint_id for e in kept),
        delete_ids=tuple(sorted(e.checkpoint_id for e in doomed)),
        delete_shared=tuple(sorted(unreferenced)),
    )


class RetentionStorage(Protocol):
    """The storage side of retention: list what is there, delete what a plan says."""

    def list_checkpoints(self) -> list[CheckpointEntry]:
        """Every ``chk-<n>`` under the jobId: completed or not, and the shared files it references."""
        ...

    def delete_checkpoints(self, plan: RetentionPlan) -> None:
        """Deletes what ``plan`` says: ``_metadata`` files first, then the directories, then shared files."""
        ...
