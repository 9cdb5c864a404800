"""Incremental keyed snapshots: which chunks and keys changed since the last *completed* checkpoint.

A backend with ``incremental=True`` records a *mark* for every write: the written key (one
``set.add`` per write, no hashing) or a ``ChunkMark`` (a change not tied to a key, such as a
RocksDB TTL sweep, or every chunk before the first checkpoint). At each checkpoint only
the chunks holding a mark since the last confirmed checkpoint are written, as content-addressed
shared files (skipping names already in storage); every other chunk references the shared files
of the confirmed checkpoint. The confirmed state of a chunk is a *chain* (``chunks.py``): a full
file, then delta files holding only the keys marked since; a chunk whose marks are all keys gets
a delta, until ``chunks.compact`` says it is due to be written whole again. The confirmed base advances only on
``notify_checkpoint_complete``; an aborted or failed checkpoint leaves it where it was, and its
marks count again in the next one. Savepoints never use this: they are full and private.

Cost model: the synchronous part only moves the mark set aside (one C-level set copy); marks are
resolved to chunks (key-group hashing) in the background part.

Thread model: ``begin`` runs on the task thread in the synchronous part of a snapshot,
``changed_chunks``, ``upload`` and ``finish`` in the background part, ``complete``/``abort`` on
the task thread; a lock guards the bookkeeping they share. Mark sets handed to a snapshot are
never mutated again.

Callers: both keyed backends (through ``keyed_base.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streamjob.worker.snapshot.handles import SnapshotWriter, StateHandle
from streamjob.worker.state.chunks import Chunk, shared_name

Chain = list[StateHandle]
"""A chunk's files in a checkpoint, in the order a restore applies them: a full file, then deltas."""


@dataclass(frozen=True, slots=True)
class ChunkMark:
    """A mark naming a chunk directly (never equal to a user key: keys are primitives)."""

    chunk: Chunk


@dataclass(slots=True)
class _Pending:
    own: set[Any]  # marks recorded between the previous snapshot's begin and this one's
    checkpoint_id: int | None = None
    handles: dict[Chunk, Chain] | None = None


@dataclass(slots=True)
class IncrementalPlan:
    """What the background part of one incremental snapshot must do."""

    token: int
    marks: list[set[Any]]  # this snapshot's own marks and those of every unconfirmed earlier one
    base: dict[Chunk, Chain] = field(default_factory=dict)
    unverified: frozenset[str] = frozenset()  # base paths adopted from a restore, not yet seen in storage


class IncrementalTracker:
    """Marks, pending snapshots and the confirmed base of one keyed backend."""

    def __init__(self, operator_uid: str, chunks: Iterable[Chunk], chunk_of_key: Callable[[Any], Chunk]) -> None:
        self._uid = operator_uid
        self._chunks = list(chunks)
        self._chunk_of_key = chunk_of_key
        self.dirty: set[Any] = {ChunkMark(chunk) for chunk in self._chunks}
        self._confirmed: dict[Chunk, Chain] = {}
        self._pending: dict[int, _Pending] = {}
        self._known: dict[str, StateHandle] = {}
        self._unverified: set[str] = set()
        self._next_token = 0
        self._lock = threading.Lock()

    def adopt(self, handles: Iterable[StateHandle]) -> None:
        """After a restore: the chains of shared files covering exactly one of our chunks become the base.

        They are verified to exist in the new snapshot's storage before being referenced (a
        restore into a new job lineage has no access to the old lineage's ``shared/``).
        """
        with self._lock:
            self._confirmed.clear()
            self._unverified.clear()
            by_range: dict[tuple[int | None, int | None], Chain] = {}
            private: set[tuple[int | None, int | None]] = set()
            for h in handles:
                chunk_range = (h.key_group_start, h.key_group_end)
                if h.shared:
                    by_range.setdefault(chunk_range, []).append(h)
                else:
                    private.add(chunk_range)
            for chunk in self._chunks:
                chain = by_range.get(chunk)
                if chain is not None and chunk not in private:
                    self._confirmed[chunk] = chain
                    self._unverified.update(h.path for h in chain)
                    self.dirty.discard(ChunkMark(chunk))
                else:
                    self.dirty.add(ChunkMark(chunk))

    def begin(self) -> IncrementalPlan:
        """Synchronous part: sets this snapshot's marks aside (a set copy; no hashing)."""
        with self._lock:
            own = self.dirty.copy()
            self.dirty.clear()  # the same set object: backends hold its bound ``add``
            marks = [own] + [pending.own for pending in self._pending.values()]
            token = self._next_token
            self._next_token += 1
            self._pending[token] = _Pending(own=own)
            return IncrementalPlan(
                token=token, marks=marks, base=dict(self._confirmed), unverified=frozenset(self._unverified)
            )

    def changes(self, plan: IncrementalPlan) -> dict[Chunk, set[Any] | None]:
        """Background part: per changed chunk, its marked keys, or None when the whole chunk changed."""
        chunk_of_key = self._chunk_of_key
        changed: dict[Chunk, set[Any] | None] = {}
        for marks in plan.marks:
            for mark in marks:
                if type(mark) is ChunkMark:
                    changed[mark.chunk] = None
        if len(changed) == len(self._chunks):  # every chunk is written whole: no key needs hashing
            return changed
        for marks in plan.marks:
            for mark in marks:
                if type(mark) is ChunkMark:
                    changed[mark.chunk] = None
                    continue
                chunk = chunk_of_key(mark)
                if chunk not in changed:
                    changed[chunk] = {mark}
                    continue
                keys = changed[chunk]
                if keys is not None:
                    keys.add(mark)
        return changed

    def changed_chunks(self, plan: IncrementalPlan) -> set[Chunk]:
        """Background part: the chunks holding any of the plan's marks."""
        return set(self.changes(plan))

    def base_usable(self, writer: SnapshotWriter, plan: IncrementalPlan, chunk: Chunk) -> bool:
        """Whether the plan's base chain of ``chunk`` may be referenced by this snapshot."""
        chain = plan.base.get(chunk)
        if not chain:
            return False
        for handle in chain:
            if handle.path not in plan.unverified:
                continue
            if not writer.shared_exists(handle.path.rsplit("/", 1)[-1]):
                return False
            with self._lock:
                self._unverified.discard(handle.path)
        return True

    def upload(self, writer: SnapshotWriter, chunk: Chunk, data: bytes) -> StateHandle:
        """Writes the shared file of a changed chunk, unless this backend knows it is there."""
        name = shared_name(self._uid, chunk, data)
        with self._lock:
            known = self._known.get(name)
        if known is not None and writer.shared_exists(name):
            return known
        handle = writer.write_shared(name, data)  # idempotent: same name, same content
        handle = handle.model_copy(update={"key_group_start": chunk[0], "key_group_end": chunk[1], "shared": True})
        with self._lock:
            self._known[name] = handle
        return handle

    def finish(self, token: int, checkpoint_id: int, handles: dict[Chunk, Chain]) -> None:
        """Background part: records the chains the snapshot of ``token`` ended up with."""
        with self._lock:
            pending = self._pending.get(token)
            if pending is not None:
                pending.checkpoint_id = checkpoint_id
                pending.handles = dict(handles)

    def cancel(self, token: int) -> None:
        """The snapshot of ``token`` failed or was a savepoint: its marks stay dirty."""
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is not None:
                self.dirty |= pending.own

    def complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: its chunks become the confirmed base."""
        with self._lock:
            match = [t for t, p in self._pending.items() if p.checkpoint_id == checkpoint_id]
            if not match:
                return
            token = match[-1]
            pending = self._pending[token]
            older = [t for t in self._pending if t <= token]
            if pending.handles is None:  # cannot happen after ``finish``; stay conservative
                for t in older:
                    self.dirty |= self._pending.pop(t).own
                return
            for t in older:  # their marks were part of this snapshot's plan
                del self._pending[t]
            self._confirmed = pending.handles
            live = {h.path for chain in self._confirmed.values() for h in chain}
            for other in self._pending.values():
                live.update(h.path for chain in (other.handles or {}).values() for h in chain)
            self._known = {name: h for name, h in self._known.items() if h.path in live}

    def abort(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` was aborted: forget it, keep its marks dirty."""
        with self._lock:
            for token in [t for t, p in self._pending.items() if p.checkpoint_id == checkpoint_id]:
                self.dirty |= self._pending.pop(token).own

    def confirmed(self) -> dict[Chunk, Chain]:
        """The chains of the last completed checkpoint (for tests and metrics)."""
        with self._lock:
            return dict(self._confirmed)


__all__ = ["Chain", "ChunkMark", "IncrementalPlan", "IncrementalTracker"]
