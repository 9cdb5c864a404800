"""A task: one parallel subtask of a job vertex, running its operator chain on the slot's event loop.

The slot (``slot``) builds the task's channels and calls ``run``; control messages from the
JobMaster arrive as method calls between batches (the loop is single-threaded, so they never
interleave with a batch). The task owns the loops (a source's polling loop, a consumer's input
loop), cuts input batches into slices, runs them through the operator chain, fires timers and
emits to the record writers. What it is built from (the slot's ``TaskServices``, its ``TaskRestore``,
the chain's operators, the slice sizer) is in ``runtime/task_setup.py``. Checkpoints are delegated,
as in Flink's ``StreamTask``:

- ``runtime/barriers/`` (``InputBarriers``) owns everything about barriers on the inputs —
  alignment, unaligned checkpoints, overtaking, the aligned timeout, the in-flight capture;
- ``runtime/subtask_checkpointer.py`` (``SubtaskCheckpointer``) takes the snapshot, forwards the
  barrier, prepares, writes and acknowledges. Its preparation runs in slices between the task's
  batches (``PREPARE_BUDGET_S``), so the task calls ``prepare`` after a batch while one is queued.

Every time is read from the task's ``Clock`` (``runtime/clock.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from streamjob.worker.api.metrics import MetricRegistry
from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamjob.worker.graph.job_graph import JobVertex
from streamjob.worker.protocol.events import (
    END_OF_STREAM,
    Barrier,
    EndOfStream,
    StreamEvent,
    Watermark,
    WatermarkStatus,
)
from streamjob.worker.protocol.messages import EndOfInput
from streamjob.worker.runtime.async_wait import AsyncWaitOperator
from streamjob.worker.runtime.barriers import InputBarriers
from streamjob.worker.runtime.channels import InputChannel, InputGate, RecordWriter
from streamjob.worker.runtime.clock import SYSTEM_CLOCK, Clock
from streamjob.worker.runtime.operators import StreamOperator
from streamjob.worker.runtime.source_operators import LegacySourceOperator, SourceOperator
from streamjob.worker.runtime.subtask_checkpointer import (
    PREPARE_BUDGET_S,
    SnapshotIo,
    SubtaskCheckpointer,
    SubtaskIdentity,
)
from streamjob.worker.runtime.task_setup import SliceSizer, TaskRestore, TaskServices, create_operators
from streamjob.worker.runtime.time_operators import TIME_KINDS, TimestampsOperator
from streamjob.worker.runtime.watermarks import WatermarkValve

log = logging.getLogger(__name__)

# Longest a consumer task processes input before it lets the slot's other tasks run (its network
# readers, control messages, snapshot uploads, co-located tasks). A batch whose chain is slow (a sink
# sleeping 1 ms per record) is cut into slices of about this much work; between two slices the task
# takes the barriers that overtook the queued batches, instead of leaving them behind the batch.
_CONSUMER_SLICE_S = 0.01
# How long a finished task waits for its snapshot writes in progress.
_UPLOADS_TIMEOUT_S = 60.0


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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.vertex = vertex
        self.subtask = subtask
        self.services = services
        self.gate = gate
        self.writers = writers
        self._main_writers = writers  # the writers of the main output (without the side outputs' edges)
        self._side: dict[str, list[Any]] | None = None
        self.restore = restore
        self.clock = clock
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
        self.user_metrics = MetricRegistry()  # what the functions register (api/metrics.py); read by the slot
        self._has_timers = False
        self._slices = SliceSizer(_CONSUMER_SLICE_S)
        # Writers with buffer debloating: batches are then cut to what they send with one credit each.
        self._debloated = [w for w in writers if any(c.debloater is not None for c in w.channels)]
        self._slice_started = clock.monotonic()  # since the task last let the other tasks run
        io = SnapshotIo(
            services.storage,
            services.executor,
            services.record_types,
            services.local_recovery_dir,
            services.inline_writes,
        )
        self.checkpointer = SubtaskCheckpointer(
            SubtaskIdentity(vertex.id, subtask, self.name), self, io, send=services.send, clock=clock
        )
        self.barriers = InputBarriers(gate, services.settings, self.checkpointer, clock)
        self._preparing = self.checkpointer.preparing  # read after every batch: one lookup, no call

    # -- setup ----------------------------------------------------------------------------------
    def _create_operators(self) -> None:
        create_operators(
            self.vertex, self.subtask, self.name, self.services, self.restore, self.user_metrics, self.operators
        )
        for op in self.operators:
            op.open()
        self._async_ops = [(i, op) for i, op in enumerate(self.operators) if isinstance(op, AsyncWaitOperator)]
        if self._async_ops:
            for _, op in self._async_ops:
                op.set_signal(self._async_signal)
        self._has_timers = any(op.backend is not None for op in self.operators)
        # Event time: only a task whose chain assigns watermarks, or that receives them, does any watermark work.
        self._watermark_heads: list[Any] = [
            op
            for op in self.operators
            if isinstance(op, TimestampsOperator)
            or (isinstance(op, SourceOperator) and op.watermarks is not None)
            or (isinstance(op, LegacySourceOperator) and op.timestamped)
        ]
        self._assigns_watermarks = bool(self._watermark_heads)
        self._time_aware = self._assigns_watermarks or any(t.kind in TIME_KINDS for t in self.vertex.operators)
        self._valve = WatermarkValve(len(self.gate.channels))
        self._watermark_out = MIN_WATERMARK
        self._route_side_outputs()

    def _route_side_outputs(self) -> None:
        """Side outputs: the chain's tail buffers the tags its output edges carry; the rest is the main output.

        A task without side-output edges keeps ``_side`` None and pays one check per batch.
        """
        self._main_writers = self.writers
        self._side = None
        self._side_writers: list[tuple[str, RecordWriter]] = []
        outputs = self.vertex.outputs
        if not any(e.tag for e in outputs) or len(outputs) != len(self.writers) or not self.operators:
            return
        self._main_writers = [w for e, w in zip(outputs, self.writers, strict=True) if e.tag is None]
        self._side_writers = [(e.tag, w) for e, w in zip(outputs, self.writers, strict=True) if e.tag is not None]
        self._side = self.operators[-1].side_outputs
        for tag, _ in self._side_writers:
            self._side[tag] = []

    # -- control (called by the slot between batches) ----------------------------------------------
    def trigger_checkpoint(self, barrier: Barrier) -> None:
        """Source tasks: inject ``barrier`` at the next batch boundary."""
        self.triggers.append(barrier)
        self.wake.set()

    def notify_complete(self, checkpoint_id: int) -> None:
        """The checkpoint completed everywhere: commit."""
        self.checkpointer.notify_complete(checkpoint_id)
        if self.stopped_at is not None and checkpoint_id >= self.stopped_at:
            self.finishing = True
            self.wake.set()

    def notify_aborted(self, checkpoint_id: int) -> None:
        """The checkpoint failed: release alignment, resume after a failed stop-with-savepoint."""
        self.barriers.abort(checkpoint_id)
        self.checkpointer.notify_aborted(checkpoint_id)
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
        for _, op in self._async_ops:
            op.progress.set()  # a task waiting for capacity ends
        for w in self.writers:
            w.close()
        self.barriers.end_all()

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
            self.barriers.end_all()  # no more barriers will come: in-flight captures are complete
            await self.checkpointer.finish(_UPLOADS_TIMEOUT_S, cancelled=self.cancelled)
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
        checkpointer = self.checkpointer
        debloated = self._debloated
        while not self.cancelled:
            while self.triggers:
                await self._source_checkpoint(self.triggers.popleft())
            if self.finishing:
                return
            idle = self.input_done or self.stopped_at is not None
            if not idle:
                # Debloated channels: a batch the writers can send with one credit each, so that a
                # trigger waits for one credit at most, not for a whole buffer's worth.
                size = min(batch_size, *[w.batch_hint() for w in debloated]) if debloated else batch_size
                batch = head.poll(size)
                if batch is None:
                    await self._end_of_input()
                    continue
                if batch:
                    self.records_in += len(batch)
                    waited = self.backpressured_s()
                    await self._process_from(1, batch)
                    if self._async_ops:
                        await self._pump_async(block=True)
                    if self._assigns_watermarks:
                        await self._advance_watermark(MIN_WATERMARK)
                        self._announce_idleness()
                    await self._fire_timers()
                    if self._preparing:
                        checkpointer.prepare(PREPARE_BUDGET_S)
                    if self.backpressured_s() == waited:
                        # No wait for credit let the slot's other tasks run: yield now. After a wait the next
                        # batch follows at once, so a backpressured source waits for credit again instead of
                        # sitting in the ready queue, unmeasured, while its consumer works.
                        await asyncio.sleep(0)
                    continue
                delay = head.idle_delay_s()
                if self._assigns_watermarks:
                    await self._advance_watermark(MIN_WATERMARK)  # a split gone idle or finished may release it
                    self._announce_idleness()
            else:
                delay = 0.05
            if self._async_ops:
                await self._pump_async(block=False)
            checkpointer.prepare(float("inf"))  # nothing to process: finish them now
            await self._fire_timers()
            self.wake.clear()
            if self.triggers or self.finishing or self.cancelled:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self._timer_delay(delay))
            except TimeoutError:
                pass

    async def _source_checkpoint(self, barrier: Barrier) -> None:
        """The sync snapshot, then the barrier and the rest.

        A legacy source's snapshot takes, under its checkpoint lock, the records its thread emitted
        that the task has not drained yet: its position counts them, so they run through the rest of
        the chain before the chained operators snapshot (a chained two-phase-commit sink writes them
        into this checkpoint's transaction, not the next one, which a crash would abort).
        """
        head = self.operators[0]
        if isinstance(head, LegacySourceOperator):
            sync = self.checkpointer.snapshot_sync(barrier, slice(0, 1))
            for drained, watermark in head.take_drained():  # cut at the source's emit_watermark calls
                if drained:
                    self.records_in += len(drained)
                    await self._process_from(1, drained)
                if watermark is not None:
                    head.watermark = max(head.watermark, watermark)
                    await self._advance_watermark(MIN_WATERMARK)
            if sync is not None:
                sync = self.checkpointer.snapshot_sync(barrier, slice(1, None), sync)
        else:
            sync = self.checkpointer.snapshot_sync(barrier)
        if sync is not None and barrier.stop:
            self.stopped_at = barrier.id
        self.checkpointer.forward_and_write(sync, barrier, 0.0, None)

    async def _run_consumer(self) -> None:
        gate = self.gate
        barriers = self.barriers
        accepts = barriers.accepts
        monotonic = self.clock.monotonic
        self._slice_started = monotonic()
        while not self.cancelled and not self.finishing:
            overtaking = gate.take_head_barrier(accepts)
            if overtaking is not None:
                self._on_barrier(overtaking[0], overtaking[1], overtook=True)
                await self._fire_timers()
                continue
            found: tuple[InputChannel, Any] | None = gate.poll()
            if found is None:
                self.checkpointer.prepare(float("inf"))  # nothing to process: finish them now
                await self._fire_timers()
                if barriers.times_out:
                    barriers.check_timeouts()
                if self._async_ops:
                    found = await self._next_or_async(gate)
                else:
                    found = await gate.next(timeout=self._timer_delay(0.05))
                self._slice_started = monotonic()  # the wait let the other tasks run
                if found is None:
                    continue
            channel, item = found
            if type(item) is list:
                await self._process_input(channel, item)
                continue
            if type(item) is Barrier:
                self._on_barrier(channel, item)
            elif type(item) is Watermark:
                await self._on_watermark(self._valve.on_watermark(channel.index, item.timestamp_ms))
            elif type(item) is WatermarkStatus:
                was_idle = self._valve.idle
                await self._on_watermark(self._valve.on_status(channel.index, idle=item.idle))
                if self._valve.idle != was_idle:
                    self.broadcast(WatermarkStatus(self._valve.idle))
            elif type(item) is EndOfStream:
                channel.finished = True
                barriers.on_end_of_stream(channel.index)
                if self._time_aware:
                    await self._on_watermark(self._valve.on_end(channel.index))
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
        barriers = self.barriers
        captures, times_out = barriers.captures, barriers.times_out
        monotonic = self.clock.monotonic
        start, n = 0, len(batch)
        debloated = self._debloated
        while True:
            size = self._slices.size
            if debloated:  # a barrier taken after this slice then waits for one credit per channel at most
                size = min(size, *[w.batch_hint() for w in debloated])
            piece = batch if start == 0 and size >= n else batch[start : start + size]
            start += len(piece)
            self.records_in += len(piece)
            if captures and channel is not None:
                barriers.capture(channel.index, piece)
            began = monotonic()
            out = self._run_chain(0, piece)
            self._slices.record(len(piece), monotonic() - began)
            if out:
                await self._emit(out)
            if self._side is not None:
                await self._emit_side_outputs()
            if self._async_ops:
                await self._pump_async(block=True)
            if self._assigns_watermarks:
                await self._advance_watermark(self._valve.current)
            if self._preparing:
                self.checkpointer.prepare(PREPARE_BUDGET_S)
            if times_out:
                barriers.check_timeouts()
            if self._has_timers:
                await self._fire_timers()
            # The slot's tasks share one event loop: a consumer that drained its whole queue at once
            # (a slow sink: seconds) kept its co-located producers, the credit reader, the metrics
            # reporter and its own snapshot uploads and acks from running. Not after every batch
            # either: then a fast consumer's producers keep its queue full to the credit limit, and
            # every aligned barrier waits behind a full queue.
            if monotonic() - self._slice_started >= _CONSUMER_SLICE_S:
                await asyncio.sleep(0)
                self._slice_started = monotonic()
            if start >= n or self.cancelled:
                return
            if channel is not None:
                self._take_overtaking_barriers(channel, batch, start)

    def _take_overtaking_barriers(self, current: InputChannel, batch: list[Any], start: int) -> None:
        """Handles barriers that overtook the queued batches while ``current``'s batch was in progress.

        The unprocessed part of that batch (from ``start``) precedes anything queued on ``current``:
        a barrier of ``current`` overtakes it too (it is stored with the checkpoint and still
        processed after the barrier); for a barrier of another channel, ``current`` is among the
        channels whose records are captured until their barrier comes.
        """
        barriers = self.barriers
        while (found := self.gate.take_head_barrier(barriers.accepts)) is not None:
            channel, barrier = found
            if channel is current:
                barriers.overtook_rest(channel.index, barrier.id, batch[start:])
            self._on_barrier(channel, barrier, overtook=True)

    def _on_barrier(self, channel: InputChannel, barrier: Barrier, *, overtook: bool = False) -> None:
        self.barriers.on_barrier(channel.index, barrier, overtook=overtook)
        if barrier.stop:
            self.stopped_at = barrier.id

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
        if self._side is not None:
            await self._emit_side_outputs()

    def _timer_delay(self, default: float) -> float:
        nxt = None
        for op in self.operators:
            t = op.next_timer()
            if t is not None and (nxt is None or t < nxt):
                nxt = t
        if nxt is None:
            return default
        return max(0.0, min(default, (nxt - self.clock.now_ms()) / 1000))

    async def _fire_timers(self) -> None:
        now: int | None = None
        for index, op in enumerate(self.operators):
            t = op.next_timer()
            if t is None:
                continue
            if now is None:
                now = self.clock.now_ms()
            if t <= now:
                out = op.fire_timers(now)
                if out:
                    await self._process_from_after(index, out)
        if self._side is not None:
            await self._emit_side_outputs()

    async def _process_from_after(self, index: int, batch: list[Any]) -> None:
        await self._process_from(index + 1, batch) if index + 1 < len(self.operators) else await self._emit(batch)

    async def _emit(self, batch: list[Any]) -> None:
        self.records_out += len(batch)
        for w in self._main_writers:
            await w.emit(batch)

    async def _emit_side_outputs(self) -> None:
        """Sends what the tail emitted to each side output (``ctx.output``, late data) on that tag's edges."""
        side = self._side
        assert side is not None
        batches = {tag: records for tag, records in side.items() if records}
        if not batches:
            return
        for tag in batches:
            side[tag] = []
        shared = len(self._side_writers) > len(side)  # one tag read by several streams: each gets its own list
        for tag, writer in self._side_writers:
            records = batches.get(tag)
            if records:
                self.records_out += len(records)
                await writer.emit(list(records) if shared else records)

    async def _on_watermark(self, watermark: int | None) -> None:
        """The input valve's watermark grew (None: it did not)."""
        self._time_aware = True
        if watermark is not None:
            await self._advance_watermark(watermark)

    async def _advance_watermark(self, watermark: int, start: int = 0) -> None:
        """Runs ``watermark`` down the chain from operator ``start`` (each fires what it reached), then sends it on."""
        for index, op in enumerate(self.operators):
            if index < start:
                continue
            watermark, out = op.on_watermark(watermark)
            if out:
                await self._process_from_after(index, out)
        if self._side is not None:
            await self._emit_side_outputs()  # before the watermark, as the main output's records
        if watermark > self._watermark_out:
            self._watermark_out = watermark
            self.broadcast(Watermark(watermark))

    def _announce_idleness(self) -> None:
        """Tells the consumers when this source's assigner became idle or active (``with_idleness``)."""
        idle = all(op.is_idle() for op in self._watermark_heads)
        if idle != self._idle_out:
            self._idle_out = idle
            self.broadcast(WatermarkStatus(idle))

    _idle_out = False

    async def _end_of_input(self) -> None:
        if self.input_done:
            return
        self.input_done = True
        if self._async_ops:
            await self._pump_async(block=True, drain=True)  # every request's results precede the end
        if self._time_aware:
            await self._advance_watermark(MAX_WATERMARK)  # every event-time window and timer fires first
        self.broadcast(END_OF_STREAM)
        self.services.send(
            EndOfInput(
                vertex=self.vertex.id, subtask=self.subtask, records_in=self.records_in, records_out=self.records_out
            )
        )

    # -- async I/O (runtime/async_wait.py; only tasks whose chain has an AsyncWaitOperator) ----------
    _async_ops: list[tuple[int, AsyncWaitOperator]] = []

    _async_ready = False  # a request finished since the task last emitted results

    def _async_signal(self) -> None:
        """A request finished: wake the task wherever it waits."""
        self._async_ready = True
        self.wake.set()
        self.gate.wake()

    async def _pump_async(self, *, block: bool, drain: bool = False) -> None:
        """Emits the finished results of each async operator down the rest of the chain, in order.

        ``block``: while records wait for capacity, wait for requests to finish (backpressure);
        ``drain``: until nothing is pending (end of input).
        """
        self._async_ready = False
        for index, op in self._async_ops:
            while not self.cancelled:
                op.progress.clear()
                for records, watermark in op.take_ready():
                    if records:
                        await self._process_from_after(index, records)
                    if watermark is not None:
                        await self._advance_watermark(watermark, index + 1)
                if not (op.blocked() or (drain and op.pending())) or not (block or drain):
                    break
                await op.progress.wait()

    async def _next_or_async(self, gate: InputGate) -> tuple[InputChannel, Any] | None:
        """Emits finished results; then the next input item, or None once a request finished or time passed."""
        await self._pump_async(block=False)
        if not any(op.pending() for _, op in self._async_ops):
            return await gate.next(timeout=self._timer_delay(0.05))
        await gate.wait(self._timer_delay(0.05), lambda: self._async_ready)
        return gate.poll()

    # -- CheckpointedChain (for the SubtaskCheckpointer) ---------------------------------------------
    def broadcast(self, event: StreamEvent) -> None:
        """Sends an event on every output channel."""
        for w in self.writers:
            w.broadcast_event(event)

    def positions(self) -> list[Any]:
        """A source task's split positions, else []."""
        head = self.operators[0] if self.operators else None
        return head.positions() if isinstance(head, SourceOperator) else []

    def backpressured_s(self) -> float:
        """Time spent waiting for downstream credit."""
        return sum(w.backpressured_s() for w in self.writers)
