"""A task: one parallel subtask of a job vertex, running its operator chain on the slot's event loop.

The slot (``slot``) builds the task's channels and calls ``run``; control messages from the
JobMaster arrive as method calls between batches (the loop is single-threaded, so they never
interleave with a batch). At a barrier the task takes the synchronous part of every operator's
snapshot and forwards the barrier; it then encodes the state in slices between its batches (a
small time budget each, see ``state/snapshot_runner.py``) and writes the files on a background
thread before acknowledging to the JobMaster — processing goes on meanwhile (asynchronous
snapshots). A small snapshot to a local disk is written by the task itself between two batches
(``runtime/inline_writes.py``): that takes less time than handing it to the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamjob.worker.config import CheckpointingMode, CheckpointSettings
from streamjob.worker.failures import failure_fields
from streamjob.worker.graph.job_graph import JobVertex
from streamjob.worker.graph.transformations import Kind
from streamjob.worker.protocol.events import END_OF_STREAM, Barrier, EndOfStream
from streamjob.worker.protocol.messages import Ack, Decline, EndOfInput, TaskFailed, ToJobMaster
from streamjob.worker.runtime.barriers import AlignedBarrierHandler, AtLeastOnceBarrierTracker
from streamjob.worker.runtime.channels import InputChannel, InputGate, RecordWriter
from streamjob.worker.runtime.checkpoint_cpu import CheckpointCpu, on_thread
from streamjob.worker.runtime.context import TaskInfo, now_ms
from streamjob.worker.runtime.inline_writes import InlineWritePolicy
from streamjob.worker.runtime.local_recovery import LocalCopyWriter, prune_local_copies
from streamjob.worker.runtime.operators import (
    OperatorRestore,
    OperatorSetup,
    SnapshotFn,
    StreamOperator,
    create_operator,
)
from streamjob.worker.runtime.source_operators import LegacySourceOperator, SourceOperator
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.key_groups import key_group_range
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage.checkpoint_storage import WorkerStorageView

log = logging.getLogger(__name__)

# Time a task spends preparing snapshots (encoding state) after each batch while one is pending: the
# work is done in slices between batches instead of in a thread competing for the GIL.
_PREPARE_BUDGET_S = 0.002
# Longest a consumer task processes input before it lets the slot's other tasks run (its network
# readers, control messages, snapshot uploads, co-located tasks). A batch whose chain is slow (a sink
# sleeping 1 ms per record) is cut into slices of about this much work; between two slices the task
# takes the barriers that overtook the queued batches, instead of leaving them behind the batch.
_CONSUMER_SLICE_S = 0.01


@dataclass
class TaskServices:
    """What the slot gives every task: settings, storage, the JobMaster link, a thread pool."""

    job_id: str
    job_name: str
    attempt: int
    settings: CheckpointSettings
    backend_kind: str
    incremental: bool
    batch_size: int
    local_dir: Path
    storage: WorkerStorageView
    executor: Executor
    send: Callable[[ToJobMaster], None]
    record_types: tuple[type, ...] = ()
    local_recovery_dir: Path | None = None
    inline_writes: InlineWritePolicy = field(default_factory=lambda: InlineWritePolicy(local_disk=False))


@dataclass
class TaskRestore:
    """A task's share of the snapshot it restores: per operator uid, plus replayed in-flight records."""

    operators: dict[str, OperatorRestore] = field(default_factory=dict)
    in_flight: list[Any] = field(default_factory=list)


@dataclass
class _Pending:
    """A snapshot between its synchronous part and its upload: its runners' steps still run on this thread."""

    barrier: Barrier
    snapshots: dict[str, SnapshotFn]
    capture: _Capture | None
    alignment_s: float
    sync_s: float
    started: float  # monotonic time after the synchronous part: the asynchronous part starts here

    def prepare(self, budget_s: float) -> bool:
        """One budget of preparation steps (one runner at a time); True when every runner is prepared."""
        return all(runner.prepare(budget_s) for runner in self.snapshots.values())

    def size_hint(self) -> int | None:
        """About how many bytes the prepared snapshot will write; None if any runner does not know."""
        total = 0
        for runner in self.snapshots.values():
            size = runner.size_hint()
            if size is None:
                return None
            total += size
        return total


class _Capture:
    """In-flight records of the channels whose barrier had not arrived when the snapshot was taken."""

    def __init__(self, channels: frozenset[int]) -> None:
        self.waiting = set(channels)
        self.records: list[Any] = []
        self.done = asyncio.get_running_loop().create_future()
        if not self.waiting:
            self.done.set_result(None)

    def end(self, channel: int) -> None:
        self.waiting.discard(channel)
        if not self.waiting and not self.done.done():
            self.done.set_result(None)

    def end_all(self) -> None:
        """The checkpoint was aborted or the task ends: stop waiting for the other barriers."""
        self.waiting.clear()
        if not self.done.done():
            self.done.set_result(None)


class _SliceSizer:
    """How many records of an input batch to run through the chain at once: about ``budget_s`` of work."""

    def __init__(self, budget_s: float, first: int = 64) -> None:
        self.budget_s = budget_s
        self.size = first
        self._per_record_s = 0.0

    def record(self, records: int, seconds: float) -> None:
        """A slice of ``records`` took ``seconds`` (a moving average, weight 1/4, sets the next size)."""
        if records <= 0:
            return
        per = seconds / records
        self._per_record_s = per if self._per_record_s == 0.0 else self._per_record_s + (per - self._per_record_s) / 4
        self.size = max(1, int(self.budget_s / self._per_record_s)) if self._per_record_s > 0 else 1 << 30


class Task:
    """Runs one subtask until it is finished or cancelled."""

    def __init__(
        self,
        vertex: JobVertex,
        subtask: int,
        services: TaskServices,
        gate: InputGate,
        writers: list[RecordWriter],
        restore: TaskRestore | None,
    ) -> None:
        self.vertex = vertex
        self.subtask = subtask
        self.services = services
        self.gate = gate
        self.writers = writers
        self.restore = restore
        self.name = f"{vertex.name} ({subtask + 1}/{vertex.parallelism})"
        self.operators: list[StreamOperator] = []
        self.triggers: deque[Barrier] = deque()
        self.wake = asyncio.Event()
        self.cancelled = False
        self.finishing = False
        self.input_done = False
        self.stopped_at: int | None = None
        self.records_in = 0
        self.records_out = 0
        self._captures: dict[int, _Capture] = {}
        self._uploads: set[asyncio.Task[None]] = set()
        self._preparing: deque[_Pending] = deque()
        self.checkpoint_cpu = CheckpointCpu()
        self._barrier_first_seen: dict[int, float] = {}
        self._positions_at_barrier: dict[int, list[Any]] = {}
        self._slices = _SliceSizer(_CONSUMER_SLICE_S)
        self._slice_started = time.monotonic()  # since the task last let the other tasks run
        settings = services.settings
        self._alignment_timeout = settings.aligned_timeout_ms > 0
        channels = len(gate.channels)
        if settings.mode is CheckpointingMode.AT_LEAST_ONCE:
            self.handler: AlignedBarrierHandler | AtLeastOnceBarrierTracker = AtLeastOnceBarrierTracker(self, channels)
        else:
            # Each barrier says whether it is unaligned (savepoints never are, as in Flink).
            self.handler = AlignedBarrierHandler(self, channels, settings.aligned_timeout_ms)

    # -- setup ----------------------------------------------------------------------------------
    def _create_operators(self) -> None:
        v = self.vertex
        kg = key_group_range(v.max_parallelism, v.parallelism, self.subtask)
        for t in v.operators:
            uid = t.effective_uid()
            info = TaskInfo(
                self.services.job_id,
                self.services.job_name,
                self.name,
                uid,
                self.subtask,
                v.parallelism,
                v.max_parallelism,
                self.services.attempt,
                self.services.record_types,
            )
            restore = self.restore.operators.get(uid) if self.restore is not None else None
            setup = OperatorSetup(
                info,
                t,
                kg,
                self.services.backend_kind,
                self.services.incremental,
                self.services.local_dir / f"{uid}-{self.subtask}",
                restore,
            )
            if t.kind is Kind.SOURCE:
                op: StreamOperator = SourceOperator(setup)
            elif t.kind is Kind.LEGACY_SOURCE:
                op = LegacySourceOperator(setup)
            else:
                op = create_operator(setup)
            self.operators.append(op)
        for op in self.operators:
            op.open()
        self._has_timers = any(op.backend is not None for op in self.operators)

    # -- control (called by the slot between batches) ----------------------------------------------
    def trigger_checkpoint(self, barrier: Barrier) -> None:
        """Source tasks: inject ``barrier`` at the next batch boundary."""
        self.triggers.append(barrier)
        self.wake.set()

    def notify_complete(self, checkpoint_id: int) -> None:
        """The checkpoint completed everywhere: commit."""
        with self.checkpoint_cpu.measure():
            self._notify_complete(checkpoint_id)

    def _notify_complete(self, checkpoint_id: int) -> None:
        for op in self.operators:
            op.notify_complete(checkpoint_id)
        local = self.services.local_recovery_dir
        if local is not None:
            prune_local_copies(local, self.services.storage.checkpoint_base_uri, checkpoint_id)
        if self.stopped_at is not None and checkpoint_id >= self.stopped_at:
            self.finishing = True
            self.wake.set()

    def notify_aborted(self, checkpoint_id: int) -> None:
        """The checkpoint failed: release alignment, resume after a failed stop-with-savepoint."""
        self.handler.abort(checkpoint_id)
        self.gate.overtaking.discard(checkpoint_id)
        self.gate.announced.pop(checkpoint_id, None)
        capture = self._captures.pop(checkpoint_id, None)
        if capture is not None:
            capture.end_all()
        for op in self.operators:
            op.notify_aborted(checkpoint_id)
        if self.stopped_at == checkpoint_id:
            self.stopped_at = None
            self.wake.set()

    def finish(self) -> None:
        """End of the job (all inputs done and the final checkpoint committed, or stop-with-savepoint)."""
        self.finishing = True
        self._release()

    def cancel(self) -> None:
        """Stop now without committing anything further."""
        self.cancelled = True
        self._release()

    def _release(self) -> None:
        """Wakes everything the task may wait on, so that it ends whatever it was doing."""
        self.wake.set()
        self.gate.wake()
        for w in self.writers:
            w.close()
        for capture in self._captures.values():
            capture.end_all()

    # -- running --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Sets up operators (restoring state) and processes until finished or cancelled."""
        try:
            self._create_operators()
            if self.restore is not None and self.restore.in_flight:
                await self._process_input(None, list(self.restore.in_flight))
            if self.vertex.is_source:
                await self._run_source()
            else:
                await self._run_consumer()
            for capture in self._captures.values():
                capture.end_all()  # no more barriers will come: in-flight captures are complete
            if not self.cancelled:
                self._prepare_snapshots(float("inf"))
            if self._uploads:
                await asyncio.wait(self._uploads, timeout=60)
        finally:
            for op in reversed(self.operators):
                try:
                    op.close()
                except Exception:
                    log.exception("closing %s failed", op.uid)

    async def _run_source(self) -> None:
        head = self.operators[0]
        assert isinstance(head, SourceOperator | LegacySourceOperator)
        batch_size = self.services.batch_size
        while not self.cancelled:
            while self.triggers:
                await self._source_checkpoint(self.triggers.popleft())
            if self.finishing:
                return
            idle = self.input_done or self.stopped_at is not None
            if not idle:
                batch = head.poll(batch_size)
                if batch is None:
                    await self._end_of_input()
                    continue
                if batch:
                    self.records_in += len(batch)
                    waited = self.backpressured_s()
                    await self._process_from(1, batch)
                    await self._fire_timers()
                    if self._preparing:
                        self._prepare_snapshots(_PREPARE_BUDGET_S)
                    if self.backpressured_s() == waited:
                        # No wait for credit let the slot's other tasks run: yield now. After a wait the next
                        # batch follows at once, so a backpressured source waits for credit again instead of
                        # sitting in the ready queue, unmeasured, while its consumer works.
                        await asyncio.sleep(0)
                    continue
                delay = head.idle_delay_s()
            else:
                delay = 0.05
            self._prepare_snapshots(float("inf"))  # nothing to process: finish them now
            await self._fire_timers()
            self.wake.clear()
            if self.triggers or self.finishing or self.cancelled:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self._timer_delay(delay))
            except TimeoutError:
                pass

    async def _source_checkpoint(self, barrier: Barrier) -> None:
        with self.checkpoint_cpu.measure():
            snapshots = self._sync_snapshot(barrier)
        head = self.operators[0]
        if isinstance(head, LegacySourceOperator) and head.drained_at_barrier:
            drained, head.drained_at_barrier = head.drained_at_barrier, []
            self.records_in += len(drained)
            await self._process_from(1, drained)
        with self.checkpoint_cpu.measure():
            for w in self.writers:
                w.broadcast_event(barrier)
            if snapshots is None:
                return
            if barrier.stop:
                self.stopped_at = barrier.id
            self._start_upload(barrier, snapshots, None, 0.0)

    async def _run_consumer(self) -> None:
        gate = self.gate
        handler = self.handler
        self._slice_started = time.monotonic()
        while not self.cancelled and not self.finishing:
            found: tuple[InputChannel, Any] | None = gate.overtaking_barrier() or gate.poll()
            if found is None:
                self._prepare_snapshots(float("inf"))  # nothing to process: finish them now
                await self._fire_timers()
                self._check_alignment_timeout()
                found = await gate.next(timeout=self._timer_delay(0.05))
                self._slice_started = time.monotonic()  # the wait let the other tasks run
                if found is None:
                    continue
            channel, item = found
            if type(item) is list:
                await self._process_input(channel, item)
                continue
            if type(item) is Barrier:
                self._on_barrier(channel, item)
            elif type(item) is EndOfStream:
                channel.finished = True
                handler.on_end_of_stream(channel.index)
                if not gate.open_channels():
                    await self._end_of_input()
            await self._fire_timers()

    async def _process_input(self, channel: InputChannel | None, batch: list[Any]) -> None:
        """Runs ``batch`` (from ``channel``; None: replayed in-flight data) through the chain in slices.

        A slice is about ``_CONSUMER_SLICE_S`` of work. The task lets the event loop run once that
        much time passed since it last did, and after each slice takes the barriers that overtook the
        queued batches meanwhile (unaligned checkpoints): the rest of the batch is then in-flight data
        of that checkpoint, like the batches the barrier overtook, so the checkpoint waits for one
        slice instead of the whole backlog. Replayed data precedes every channel's: barriers wait
        until it is processed.
        """
        start, n = 0, len(batch)
        while True:
            size = self._slices.size
            piece = batch if start == 0 and size >= n else batch[start : start + size]
            start += len(piece)
            self.records_in += len(piece)
            if self._captures and channel is not None:
                self._capture(channel, piece)
            began = time.perf_counter()
            out = self._run_chain(0, piece)
            self._slices.record(len(piece), time.perf_counter() - began)
            if out:
                await self._emit(out)
            if self._preparing:
                self._prepare_snapshots(_PREPARE_BUDGET_S)
            self._check_alignment_timeout()
            if self._has_timers:
                await self._fire_timers()
            # The slot's tasks share one event loop: a consumer that drained its whole queue at once
            # (a slow sink: seconds) kept its co-located producers, the credit reader, the metrics
            # reporter and its own snapshot uploads and acks from running. Not after every batch
            # either: then a fast consumer's producers keep its queue full to the credit limit, and
            # every aligned barrier waits behind a full queue.
            if time.monotonic() - self._slice_started >= _CONSUMER_SLICE_S:
                await asyncio.sleep(0)
                self._slice_started = time.monotonic()
            if start >= n or self.cancelled:
                return
            if channel is not None:
                self._take_overtaking_barriers(channel, batch[start:])

    def _check_alignment_timeout(self) -> None:
        """Switches alignments, and barriers queued behind batches, to unaligned after the aligned timeout."""
        if self._alignment_timeout:
            if self.handler.aligning:
                self.handler.check_timeout(now_ms())
            if self.gate.announced:
                self.gate.expire_alignments(self.services.settings.aligned_timeout_ms / 1000, time.monotonic())

    def _take_overtaking_barriers(self, current: InputChannel, rest: list[Any]) -> None:
        """Handles barriers that overtook the queued batches while ``current``'s batch was in progress.

        ``rest``, the unprocessed part of that batch, precedes anything queued on ``current``: a
        barrier of ``current`` overtakes it too (it is stored with the checkpoint and still processed
        after the barrier); for a barrier of another channel, ``current`` is among the channels whose
        records are captured until their barrier comes.
        """
        while (found := self.gate.overtaking_barrier()) is not None:
            channel, barrier = found
            if channel is current:
                channel.overtaken[barrier.id] = [rest, *channel.overtaken.get(barrier.id, [])]
            self._on_barrier(channel, barrier)

    def _on_barrier(self, channel: InputChannel, barrier: Barrier) -> None:
        self._barrier_first_seen.setdefault(barrier.id, time.monotonic())
        if barrier.id in channel.overtaken:
            self._pending_overtaken = (barrier.id, channel.overtaken.pop(barrier.id))
        self.handler.on_barrier(channel.index, barrier, now_ms())
        self._pending_overtaken = None
        if barrier.stop:
            self.stopped_at = barrier.id

    _pending_overtaken: tuple[int, list[list[Any]]] | None = None
    _has_timers = False

    def _capture(self, channel: InputChannel, batch: list[Any]) -> None:
        for capture in self._captures.values():
            if channel.index in capture.waiting:
                capture.records.extend(batch)

    def _run_chain(self, start: int, batch: list[Any]) -> list[Any]:
        for op in self.operators[start:]:
            batch = op.process_batch(batch)
            if not batch:
                break
        return batch

    async def _process_from(self, start: int, batch: list[Any]) -> None:
        out = self._run_chain(start, batch)
        if out:
            await self._emit(out)

    def _timer_delay(self, default: float) -> float:
        nxt = None
        for op in self.operators:
            t = op.next_timer()
            if t is not None and (nxt is None or t < nxt):
                nxt = t
        if nxt is None:
            return default
        return max(0.0, min(default, (nxt - now_ms()) / 1000))

    async def _fire_timers(self) -> None:
        now: int | None = None
        for index, op in enumerate(self.operators):
            t = op.next_timer()
            if t is None:
                continue
            if now is None:
                now = now_ms()
            if t <= now:
                out = op.fire_timers(now)
                if out:
                    await self._process_from_after(index, out)

    async def _process_from_after(self, index: int, batch: list[Any]) -> None:
        await self._process_from(index + 1, batch) if index + 1 < len(self.operators) else await self._emit(batch)

    async def _emit(self, batch: list[Any]) -> None:
        self.records_out += len(batch)
        for w in self.writers:
            await w.emit(batch)

    async def _end_of_input(self) -> None:
        if self.input_done:
            return
        self.input_done = True
        for w in self.writers:
            w.broadcast_event(END_OF_STREAM)
        self.services.send(
            EndOfInput(
                vertex=self.vertex.id, subtask=self.subtask, records_in=self.records_in, records_out=self.records_out
            )
        )

    # -- BarrierHost ------------------------------------------------------------------------------
    def block(self, channel: int) -> None:
        self.gate.set_blocked(self.gate.channels[channel], True)

    def unblock_all(self) -> None:
        for c in self.gate.channels:
            if c.blocked:
                self.gate.set_blocked(c, False)

    def snapshot(self, barrier: Barrier, capture: frozenset[int]) -> None:
        with self.checkpoint_cpu.measure():
            self._snapshot(barrier, capture)

    def _snapshot(self, barrier: Barrier, capture: frozenset[int]) -> None:
        first = self._barrier_first_seen.pop(barrier.id, time.monotonic())
        self.gate.announced.pop(barrier.id, None)
        alignment_s = time.monotonic() - first
        snapshots = self._sync_snapshot(barrier)
        for w in self.writers:
            w.broadcast_event(barrier)
        if snapshots is None:
            return
        cap: _Capture | None = None
        if capture or self._pending_overtaken:
            if capture:
                # Unaligned from here on: the barriers still to come on ``capture`` overtake queued batches.
                self.gate.overtake(barrier.id, capture)
            cap = _Capture(capture)
            if self._pending_overtaken is not None and self._pending_overtaken[0] == barrier.id:
                for batch in self._pending_overtaken[1]:
                    cap.records.extend(batch)
            self._captures[barrier.id] = cap
        self._start_upload(barrier, snapshots, cap, alignment_s)

    def end_capture(self, checkpoint_id: int, channel: int) -> None:
        cap = self._captures.get(checkpoint_id)
        if cap is None:
            return
        if self._pending_overtaken is not None and self._pending_overtaken[0] == checkpoint_id:
            for batch in self._pending_overtaken[1]:
                cap.records.extend(batch)
        cap.end(channel)

    def cancel_alignment(self, checkpoint_id: int) -> None:
        self.gate.overtaking.discard(checkpoint_id)
        capture = self._captures.pop(checkpoint_id, None)
        if capture is not None:
            capture.end_all()
        self.services.send(
            Decline(
                cp=checkpoint_id,
                vertex=self.vertex.id,
                subtask=self.subtask,
                reason="a newer checkpoint overtook it at this task",
                subsumed=True,
            )
        )

    # -- snapshots --------------------------------------------------------------------------------
    def _sync_snapshot(self, barrier: Barrier) -> dict[str, SnapshotFn] | None:
        """The synchronous part of every operator's snapshot; None (and a decline) if one failed."""
        started = time.monotonic()
        self._positions_at_barrier[barrier.id] = self._positions()
        snapshots: dict[str, SnapshotFn] = {}
        for op in self.operators:
            try:
                snapshots[op.uid] = op.snapshot(barrier.id, barrier.timestamp_ms)
            except Exception as err:
                log.warning("snapshot of %s failed for checkpoint %s: %s", op.uid, barrier.id, err)
                if self._failed_for_good(err):
                    return None
                self.services.send(
                    Decline(
                        cp=barrier.id,
                        vertex=self.vertex.id,
                        subtask=self.subtask,
                        reason=f"operator '{op.uid}' failed to snapshot: {type(err).__name__}: {err}",
                    )
                )
                return None
        self._sync_s = time.monotonic() - started
        return snapshots

    def _start_upload(
        self, barrier: Barrier, snapshots: dict[str, SnapshotFn], capture: _Capture | None, alignment_s: float
    ) -> None:
        """Queues the snapshot's preparation (``snapshot_runner.py``), runs its first budget, then uploads."""
        self._preparing.append(_Pending(barrier, snapshots, capture, alignment_s, self._sync_s, time.monotonic()))
        self._prepare_snapshots(_PREPARE_BUDGET_S)

    def _prepare_snapshots(self, budget_s: float) -> None:
        """Runs preparation steps of the queued snapshots, in barrier order; starts the upload of each prepared one."""
        if self._preparing:
            with self.checkpoint_cpu.measure():
                self._prepare_queued(budget_s)

    def _prepare_queued(self, budget_s: float) -> None:
        while self._preparing:
            pending = self._preparing[0]
            if not pending.prepare(budget_s):
                return
            self._preparing.popleft()
            policy = self.services.inline_writes
            if pending.capture is None and policy.inline(
                pending.size_hint(), savepoint=pending.barrier.savepoint_dir is not None
            ):
                self._write_inline(pending, policy)
                continue
            task = asyncio.create_task(self._upload(pending))
            self._uploads.add(task)
            task.add_done_callback(self._uploads.discard)

    def _write_inline(self, pending: _Pending, policy: InlineWritePolicy) -> None:
        """Writes and syncs a small prepared snapshot on this thread, then acknowledges it."""
        barrier = pending.barrier
        started = time.perf_counter()
        try:
            states = _write_all(
                self.services.storage, barrier, self.subtask, pending.snapshots, self.services.local_recovery_dir
            )
        except Exception as err:
            self._upload_failed(barrier, err)
            return
        policy.record(time.perf_counter() - started)
        self._acknowledge(pending, states)

    async def _upload(self, pending: _Pending) -> None:
        barrier, snapshots, capture = pending.barrier, pending.snapshots, pending.capture
        loop = asyncio.get_running_loop()
        storage = self.services.storage
        try:
            states, cpu_s = await loop.run_in_executor(
                self.services.executor,
                on_thread,
                _write_all,
                storage,
                barrier,
                self.subtask,
                snapshots,
                self.services.local_recovery_dir,
            )
            self.checkpoint_cpu.add(cpu_s)
            if capture is not None:
                await capture.done
                self._captures.pop(barrier.id, None)
                self.gate.overtaking.discard(barrier.id)
                head_uid = self.operators[0].uid
                records = capture.records
                serializer = SafeSerializer(declared_types=self.services.record_types)
                handles, cpu_s = await loop.run_in_executor(
                    self.services.executor,
                    on_thread,
                    _write_channel_state,
                    storage,
                    barrier,
                    head_uid,
                    self.subtask,
                    serializer,
                    records,
                    self.services.local_recovery_dir,
                )
                self.checkpoint_cpu.add(cpu_s)
                states.setdefault(head_uid, {"keyed": [], "operator": []})["channel"] = handles
        except Exception as err:
            self._upload_failed(barrier, err)
            return
        with self.checkpoint_cpu.measure():
            self._acknowledge(pending, states)

    def _upload_failed(self, barrier: Barrier, err: Exception) -> None:
        self._positions_at_barrier.pop(barrier.id, None)
        log.warning("checkpoint %s failed at %s: %s", barrier.id, self.name, err)
        if self._failed_for_good(err):
            return
        self.services.send(
            Decline(cp=barrier.id, vertex=self.vertex.id, subtask=self.subtask, reason=f"{self.name}: {err}")
        )

    def _failed_for_good(self, err: Exception) -> bool:
        """A snapshot error no restart mends (a value its serializer refuses) fails the task, not the checkpoint."""
        fields = failure_fields(err)
        if fields["failure_class"] is None:
            return False
        error = f"{type(err).__name__}: {err}"
        self.services.send(TaskFailed(vertex=self.vertex.id, subtask=self.subtask, error=error, **fields))
        return True

    def _acknowledge(self, pending: _Pending, states: dict[str, dict[str, list[StateHandle]]]) -> None:
        barrier, alignment_s, sync_s, started = pending.barrier, pending.alignment_s, pending.sync_s, pending.started
        size = sum(h.size for s in states.values() for hs in s.values() for h in hs)
        self.services.send(
            Ack(
                cp=barrier.id,
                vertex=self.vertex.id,
                subtask=self.subtask,
                states=states,
                stats={
                    "alignment_ms": alignment_s * 1000,
                    "sync_ms": sync_s * 1000,
                    "async_ms": (time.monotonic() - started) * 1000,
                    "size": float(size),
                    "cpu_ms": self.checkpoint_cpu.take() * 1000,
                },
                positions=self._positions_at_barrier.pop(barrier.id, []),
                records_in=self.records_in,
                records_out=self.records_out,
            )
        )

    def _positions(self) -> list[Any]:
        head = self.operators[0] if self.operators else None
        return head.positions() if isinstance(head, SourceOperator) else []

    def backpressured_s(self) -> float:
        """Time spent waiting for downstream credit."""
        return sum(w.backpressured_s() for w in self.writers)


def _writer(storage: Any, barrier: Barrier, uid: str, subtask: int, local: Path | None) -> Any:
    writer = storage.writer(barrier.id, uid, subtask, savepoint_dir=barrier.savepoint_dir)
    if local is not None and barrier.savepoint_dir is None:
        return LocalCopyWriter(writer, local, storage.checkpoint_base_uri)
    return writer


def _write_all(
    storage: Any, barrier: Barrier, subtask: int, snapshots: dict[str, SnapshotFn], local: Path | None
) -> dict[str, dict[str, list[StateHandle]]]:
    out: dict[str, dict[str, list[StateHandle]]] = {}
    writers = []
    for uid, write in snapshots.items():
        writer = _writer(storage, barrier, uid, subtask, local)
        out[uid] = write(writer)
        writers.append(writer)
    for writer in writers:
        writer.flush()  # one file-system sync for the whole snapshot, before the acknowledgement
    return out


def _write_channel_state(
    storage: Any,
    barrier: Barrier,
    uid: str,
    subtask: int,
    serializer: SafeSerializer,
    records: list[Any],
    local: Path | None,
) -> list[StateHandle]:
    writer = _writer(storage, barrier, uid, subtask, local)
    handles = [writer.write("in-flight", serializer.encode(records))]
    writer.flush()
    return handles
