"""One subtask's part of a checkpoint (Flink's ``SubtaskCheckpointCoordinatorImpl``).

At a barrier the task (``runtime/task.py``) or its inputs (``runtime/barriers/``) call
``checkpoint``, which runs the phases in order:

1. **sync** — the synchronous part of every operator's snapshot (state references copied,
   ``snapshot_state`` of checkpointed functions, ``pre_commit`` of two-phase-commit sinks) and the
   source positions; a failing operator declines the checkpoint with its reason (an error no
   restart mends, such as a value the state's serializer refuses, fails the task instead);
2. **forward** — the barrier goes to every output channel;
3. **prepare** — the hashmap copy is encoded in slices of ~2 ms between the task's batches
   (``prepare``, see ``state/snapshot_runner.py``): a thread would only take turns with the task
   for the GIL;
4. **write** — the files are written and synced on the slot's I/O thread, or by the task itself
   when the snapshot is small and the disk local (``runtime/inline_writes.py``); an unaligned
   checkpoint then waits for its in-flight capture and writes it beside the head operator's state;
5. **ack** — the handles, the phases' durations, the size, the checkpoint CPU time and the source
   positions go to the JobMaster; a failing write declines with the reason instead (or fails the
   task, as in 1).

Processing goes on during 3-5 (asynchronous snapshots). The checkpointer also relays completion
and abort notifications to the operators. It reads storage through the task-side
``WorkerStorageView``, talks to the JobMaster only through ``send``, and reads time only from its
``Clock``. A source task (no inputs) calls ``snapshot_sync`` and ``forward_and_write`` itself, so
that a legacy source's records emitted before the barrier go out in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from streamjob.worker.failures import failure_fields
from streamjob.worker.protocol.events import Barrier, EndOfStream
from streamjob.worker.protocol.messages import Ack, Decline, TaskFailed, ToJobMaster
from streamjob.worker.runtime.barriers.in_flight import InFlightCapture
from streamjob.worker.runtime.checkpoint_cpu import CheckpointCpu
from streamjob.worker.runtime.clock import SYSTEM_CLOCK, Clock
from streamjob.worker.runtime.inline_writes import InlineWritePolicy
from streamjob.worker.runtime.local_recovery import LocalCopyWriter, prune_local_copies
from streamjob.worker.runtime.operators import SnapshotFn
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage.checkpoint_storage import SubtaskSnapshotWriter, WorkerStorageView

log = logging.getLogger(__name__)

#: Time spent preparing snapshots (encoding state) after each batch while one is pending: the work
#: is done in slices between batches instead of in a thread competing for the GIL.
PREPARE_BUDGET_S = 0.002

States = dict[str, dict[str, list[StateHandle]]]


class SnapshottingOperator(Protocol):
    """What the checkpointer asks of each operator of the chain (``runtime/operators.StreamOperator``)."""

    uid: str

    def snapshot(self, checkpoint_id: int, timestamp_ms: int) -> SnapshotFn: ...

    def notify_complete(self, checkpoint_id: int) -> None: ...

    def notify_aborted(self, checkpoint_id: int) -> None: ...


class CheckpointedChain(Protocol):
    """What the checkpointer asks of its task: the chain, the barrier's way out, the counters."""

    @property
    def operators(self) -> Sequence[SnapshottingOperator]: ...

    @property
    def records_in(self) -> int: ...

    @property
    def records_out(self) -> int: ...

    def broadcast(self, event: Barrier | EndOfStream) -> None:
        """Sends an event on every output channel."""
        ...

    def positions(self) -> list[Any]:
        """The source positions at this moment (a source task's head), else []."""
        ...


@dataclass(frozen=True)
class SubtaskIdentity:
    """Who acknowledges: the vertex, the subtask index, and the name used in logs and declines."""

    vertex: str
    subtask: int
    name: str


@dataclass(frozen=True)
class SnapshotIo:
    """Where and how a subtask's snapshot files are written."""

    storage: WorkerStorageView
    executor: Executor
    record_types: tuple[type, ...] = ()
    local_recovery_dir: Path | None = None
    inline_writes: InlineWritePolicy = field(default_factory=lambda: InlineWritePolicy(local_disk=False))


@dataclass
class SyncSnapshot:
    """The synchronous part of one checkpoint at this subtask."""

    barrier: Barrier
    snapshots: dict[str, SnapshotFn]
    positions: list[Any]
    sync_s: float


@dataclass
class _Pending:
    """A snapshot between its synchronous part and its acknowledgement."""

    sync: SyncSnapshot
    capture: InFlightCapture | None
    alignment_s: float
    started: float  # monotonic time after the synchronous part: the asynchronous part starts here

    def prepare(self, budget_s: float) -> bool:
        """One budget of preparation steps (one runner at a time); True when every runner is prepared."""
        return all(runner.prepare(budget_s) for runner in self.sync.snapshots.values())

    def size_hint(self) -> int | None:
        """About how many bytes the prepared snapshot will write; None if any runner does not know."""
        total = 0
        for runner in self.sync.snapshots.values():
            size = runner.size_hint()
            if size is None:
                return None
            total += size
        return total


class SubtaskCheckpointer:
    """Runs sync snapshot → forward barrier → prepare → write → ack for one subtask."""

    def __init__(
        self,
        identity: SubtaskIdentity,
        chain: CheckpointedChain,
        io: SnapshotIo,
        *,
        send: Callable[[ToJobMaster], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.identity = identity
        self.chain = chain
        self.io = io
        self.send = send
        self.clock = clock
        self.cpu = CheckpointCpu(clock)
        #: Snapshots whose preparation is queued, in barrier order; the task checks it (truthiness)
        #: before calling ``prepare`` after a batch.
        self.preparing: deque[_Pending] = deque()
        self._uploads: set[asyncio.Task[None]] = set()

    # -- phases 1 and 2 --------------------------------------------------------------------------------
    def checkpoint(self, barrier: Barrier, alignment_s: float, capture: InFlightCapture | None) -> bool:
        """All phases of a checkpoint; False (after a decline) if the synchronous part failed."""
        with self.cpu.measure():
            return self.forward_and_write(self.snapshot_sync(barrier), barrier, alignment_s, capture)

    def snapshot_sync(
        self, barrier: Barrier, operators: slice = slice(None), before: SyncSnapshot | None = None
    ) -> SyncSnapshot | None:
        """The synchronous part of the chain's snapshot; None (after a decline or a task failure) if one failed.

        ``operators``: a part of the chain (default all of it), added to ``before``, the snapshot of an
        earlier part: a legacy source's task snapshots its head, runs the records drained with it
        through the chain, and only then snapshots the rest.
        """
        with self.cpu.measure():
            started = self.clock.monotonic()
            positions = self.chain.positions() if before is None else before.positions
            snapshots: dict[str, SnapshotFn] = {} if before is None else dict(before.snapshots)
            for op in self.chain.operators[operators]:
                try:
                    snapshots[op.uid] = op.snapshot(barrier.id, barrier.timestamp_ms)
                except Exception as err:
                    log.warning("snapshot of %s failed for checkpoint %s: %s", op.uid, barrier.id, err)
                    if not self._failed_for_good(err):
                        reason = f"operator '{op.uid}' failed to snapshot: {type(err).__name__}: {err}"
                        self._decline(barrier.id, reason)
                    return None
            sync_s = self.clock.monotonic() - started + (0.0 if before is None else before.sync_s)
            return SyncSnapshot(barrier, snapshots, positions, sync_s)

    def forward_and_write(
        self, sync: SyncSnapshot | None, barrier: Barrier, alignment_s: float, capture: InFlightCapture | None
    ) -> bool:
        """Forwards ``barrier`` downstream, then queues the asynchronous part of ``sync`` (if it succeeded)."""
        with self.cpu.measure():
            self.chain.broadcast(barrier)
            if sync is None:
                return False
            self.preparing.append(_Pending(sync, capture, alignment_s, self.clock.monotonic()))
            self.prepare(PREPARE_BUDGET_S)
            return True

    def decline_subsumed(self, checkpoint_id: int) -> None:
        """A newer barrier overtook ``checkpoint_id`` here: decline it as subsumed."""
        self._decline(checkpoint_id, "a newer checkpoint overtook it at this task", subsumed=True)

    # -- phases 3 to 5 ---------------------------------------------------------------------------------
    def prepare(self, budget_s: float) -> None:
        """Runs preparation steps of the queued snapshots, in barrier order; starts the write of each prepared one."""
        if self.preparing:
            with self.cpu.measure():
                self._prepare_queued(budget_s)

    def _prepare_queued(self, budget_s: float) -> None:
        policy = self.io.inline_writes
        while self.preparing:
            pending = self.preparing[0]
            if not pending.prepare(budget_s):
                return
            self.preparing.popleft()
            barrier = pending.sync.barrier
            if pending.capture is None and policy.inline(
                pending.size_hint(), savepoint=barrier.savepoint_dir is not None
            ):
                self._write_inline(pending, policy)
                continue
            task = asyncio.create_task(self._upload(pending))
            self._uploads.add(task)
            task.add_done_callback(self._uploads.discard)

    def _write_inline(self, pending: _Pending, policy: InlineWritePolicy) -> None:
        """Writes and syncs a small prepared snapshot on this thread, then acknowledges it."""
        started = self.clock.monotonic()
        try:
            states = write_snapshot(self.io, pending.sync, self.identity.subtask)
        except Exception as err:
            self._write_failed(pending.sync.barrier, err)
            return
        policy.record(self.clock.monotonic() - started)
        self._acknowledge(pending, states)

    async def _upload(self, pending: _Pending) -> None:
        sync, capture = pending.sync, pending.capture
        loop = asyncio.get_running_loop()
        io, subtask = self.io, self.identity.subtask
        try:
            states, cpu_s = await loop.run_in_executor(io.executor, self.cpu.timed, write_snapshot, io, sync, subtask)
            self.cpu.add(cpu_s)
            if capture is not None:
                await capture.done
                head_uid = self.chain.operators[0].uid
                handles, cpu_s = await loop.run_in_executor(
                    io.executor, self.cpu.timed, write_in_flight, io, sync.barrier, head_uid, subtask, capture.records
                )
                self.cpu.add(cpu_s)
                states.setdefault(head_uid, {"keyed": [], "operator": []})["channel"] = handles
        except Exception as err:
            self._write_failed(sync.barrier, err)
            return
        with self.cpu.measure():
            self._acknowledge(pending, states)

    def _write_failed(self, barrier: Barrier, err: Exception) -> None:
        name = self.identity.name
        log.warning("checkpoint %s failed at %s: %s", barrier.id, name, err)
        if not self._failed_for_good(err):
            self._decline(barrier.id, f"{name}: {err}")

    def _failed_for_good(self, err: Exception) -> bool:
        """A snapshot error no restart mends (a value its serializer refuses) fails the task, not the checkpoint."""
        fields = failure_fields(err)
        if fields["failure_class"] is None:
            return False
        identity = self.identity
        error = f"{type(err).__name__}: {err}"
        self.send(TaskFailed(vertex=identity.vertex, subtask=identity.subtask, error=error, **fields))
        return True

    def _acknowledge(self, pending: _Pending, states: States) -> None:
        sync = pending.sync
        size = sum(h.size for s in states.values() for hs in s.values() for h in hs)
        identity = self.identity
        self.send(
            Ack(
                cp=sync.barrier.id,
                vertex=identity.vertex,
                subtask=identity.subtask,
                states=states,
                stats={
                    "alignment_ms": pending.alignment_s * 1000,
                    "sync_ms": sync.sync_s * 1000,
                    "async_ms": (self.clock.monotonic() - pending.started) * 1000,
                    "size": float(size),
                    "cpu_ms": self.cpu.take() * 1000,
                },
                positions=sync.positions,
                records_in=self.chain.records_in,
                records_out=self.chain.records_out,
            )
        )

    def _decline(self, checkpoint_id: int, reason: str, *, subsumed: bool = False) -> None:
        identity = self.identity
        self.send(
            Decline(
                cp=checkpoint_id, vertex=identity.vertex, subtask=identity.subtask, reason=reason, subsumed=subsumed
            )
        )

    async def finish(self, timeout_s: float, *, cancelled: bool) -> None:
        """The task ends: prepares what is queued (unless cancelled) and waits up to ``timeout_s`` for the writes."""
        if not cancelled:
            self.prepare(float("inf"))
        if self._uploads:
            await asyncio.wait(self._uploads, timeout=timeout_s)

    # -- completion ------------------------------------------------------------------------------------
    def notify_complete(self, checkpoint_id: int) -> None:
        """The checkpoint completed everywhere: the operators commit; older local copies go."""
        with self.cpu.measure():
            for op in self.chain.operators:
                op.notify_complete(checkpoint_id)
            local = self.io.local_recovery_dir
            if local is not None:
                prune_local_copies(local, self.io.storage.checkpoint_base_uri, checkpoint_id)

    def notify_aborted(self, checkpoint_id: int) -> None:
        """The checkpoint will never complete."""
        for op in self.chain.operators:
            op.notify_aborted(checkpoint_id)


def _writer(io: SnapshotIo, barrier: Barrier, uid: str, subtask: int) -> SubtaskSnapshotWriter:
    writer = io.storage.writer(barrier.id, uid, subtask, savepoint_dir=barrier.savepoint_dir)
    if io.local_recovery_dir is not None and barrier.savepoint_dir is None:
        local: SubtaskSnapshotWriter = LocalCopyWriter(writer, io.local_recovery_dir, io.storage.checkpoint_base_uri)
        return local
    return writer


def write_snapshot(io: SnapshotIo, sync: SyncSnapshot, subtask: int) -> States:
    """Writes every operator's prepared snapshot, then syncs them all (one sync before the acknowledgement)."""
    out: States = {}
    writers = []
    for uid, write in sync.snapshots.items():
        writer = _writer(io, sync.barrier, uid, subtask)
        out[uid] = write(writer)
        writers.append(writer)
    for writer in writers:
        writer.flush()
    return out


def write_in_flight(io: SnapshotIo, barrier: Barrier, uid: str, subtask: int, records: list[Any]) -> list[StateHandle]:
    """Writes an unaligned checkpoint's in-flight records beside the head operator's state."""
    serializer = SafeSerializer(declared_types=io.record_types)
    writer = _writer(io, barrier, uid, subtask)
    handles = [writer.write("in-flight", serializer.encode(records))]
    writer.flush()
    return handles


__all__ = [
    "PREPARE_BUDGET_S",
    "CheckpointedChain",
    "SnapshotIo",
    "SubtaskCheckpointer",
    "SubtaskIdentity",
    "SyncSnapshot",
]
