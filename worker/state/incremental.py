"""Incremental keyed snapshots: which chunks changed since the last *completed* checkpoint.

A backend with ``incremental=True`` marks chunks dirty as it writes. At each checkpoint it
re-encodes only the chunks changed since the last confirmed checkpoint, uploads them as
content-addressed shared files (skipping names already in storage), and references the shared
files of the confirmed checkpoint for every other chunk. The confirmed base advances only on
``notify_checkpoint_complete``; an aborted or failed checkpoint leaves it where it was, and its
changes count again in the next one. Savepoints never use this: they are full and private.

Thread model: ``begin`` runs on the task thread in the synchronous part of a snapshot,
``finish`` in the background part, ``complete``/``abort`` on the task thread; a lock guards
the bookkeeping they share.

Callers: both keyed backends.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamjob.worker.checkpoint.handles import SnapshotWriter, StateHandle
from streamjob.worker.state.chunks import Chunk, shared_name


@dataclass(slots=True)
class _Pending:
    changed: set[Chunk]
    checkpoint_id: int | None = None
    handles: dict[Chunk, StateHandle] | None = None


@dataclass(slots=True)
class IncrementalPlan:
    """What the background part of one incremental snapshot must do."""

    token: int
    changed: frozenset[Chunk]
    base: dict[Chunk, StateHandle] = field(default_factory=dict)


class IncrementalTracker:
    """Dirty chunks, pending snapshots and the confirmed base of one keyed backend."""

    def __init__(self, operator_uid: str, chunks: Iterable[Chunk]) -> None:
        self._uid = operator_uid
        self._chunks = list(chunks)
        self.dirty: set[Chunk] = set(self._chunks)
        self._confirmed: dict[Chunk, StateHandle] = {}
        self._pending: dict[int, _Pending] = {}
        self._known: dict[str, StateHandle] = {}
        self._next_token = 0
        self._lock = threading.Lock()

    def adopt(self, handles: Iterable[StateHandle]) -> None:
        """After a restore: shared files covering exactly one of our chunks become the base."""
        with self._lock:
            self._confirmed.clear()
            self.dirty.update(self._chunks)
            by_range = {(h.key_group_start, h.key_group_end): h for h in handles if h.shared}
            for chunk in self._chunks:
                handle = by_range.get(chunk)
                if handle is not None:
                    self._confirmed[chunk] = handle
                    self.dirty.discard(chunk)

    def begin(self) -> IncrementalPlan:
        """Synchronous part: freezes the set of chunks changed since the confirmed base."""
        with self._lock:
            changed = set(self.dirty)
            for pending in self._pending.values():
                changed |= pending.changed
            self.dirty.clear()  # the same set object: backends hold its bound ``add``
            token = self._next_token
            self._next_token += 1
            self._pending[token] = _Pending(changed=changed)
            return IncrementalPlan(token=token, changed=frozenset(changed), base=dict(self._confirmed))

    def upload(self, writer: SnapshotWriter, chunk: Chunk, data: bytes) -> StateHandle:
        """Writes (or finds already written) the shared file of a changed chunk."""
        name = shared_name(self._uid, chunk, data)
        with self._lock:
            known = self._known.get(name)
        if known is not None and writer.shared_exists(name):
            return known
        if writer.shared_exists(name):
            handle = StateHandle(
                path=f"shared/{name}", size=len(data), sha256=hashlib.sha256(data).hexdigest(), shared=True
            )
        else:
            handle = writer.write_shared(name, data)
        handle = handle.model_copy(update={"key_group_start": chunk[0], "key_group_end": chunk[1], "shared": True})
        with self._lock:
            self._known[name] = handle
        return handle

    def finish(self, token: int, checkpoint_id: int, handles: dict[Chunk, StateHandle]) -> None:
        """Background part: records the handles the snapshot of ``token`` ended up with."""
        with self._lock:
            pending = self._pending.get(token)
            if pending is not None:
                pending.checkpoint_id = checkpoint_id
                pending.handles = dict(handles)

    def cancel(self, token: int) -> None:
        """The snapshot of ``token`` failed or was a savepoint: its changes stay dirty."""
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is not None:
                self.dirty |= pending.changed

    def complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed: its chunks become the confirmed base."""
        with self._lock:
            match = [t for t, p in self._pending.items() if p.checkpoint_id == checkpoint_id]
            if not match:
                return
            token = match[-1]
            pending = self._pending[token]
            for older in [t for t in self._pending if t <= token]:
                # Older snapshots' changes are included in this one's (``begin`` took the union).
                del self._pending[older]
            if pending.handles is None:
                self.dirty |= pending.changed
                return
            self._confirmed = pending.handles
            live = {h.path for h in self._confirmed.values()}
            for other in self._pending.values():
                live.update(h.path for h in (other.handles or {}).values())
            self._known = {name: h for name, h in self._known.items() if h.path in live}

    def abort(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` was aborted: forget it, keep its changes dirty."""
        with self._lock:
            for token in [t for t, p in self._pending.items() if p.checkpoint_id == checkpoint_id]:
                pending = self._pending.pop(token)
                self.dirty |= pending.changed

    def confirmed(self) -> dict[Chunk, StateHandle]:
        """The handles of the last completed checkpoint (for tests and metrics)."""
        with self._lock:
            return dict(self._confirmed)


__all__ = ["IncrementalPlan", "IncrementalTracker"]
