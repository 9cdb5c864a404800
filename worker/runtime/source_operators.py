"""Source operators: the heads of source tasks, polled by the task loop between barriers.

``SourceOperator`` drives a pull-based ``Source`` and stores its split positions as operator
state at every barrier. ``LegacySourceOperator`` runs a push-style ``SourceFunction`` on its own
thread; records and snapshots are serialized by the checkpoint lock, so a snapshot never sees a
record emitted but not counted (or the reverse). The lock (``runtime/checkpoint_lock.py``) gives the
task its turn first, and draining never waits for it, so a source that sleeps inside the lock stalls
neither the slot's event loop nor checkpoints.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from streamjob.worker.api.sources import Source, SourceContext, SourceReader, SourceReaderContext
from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamjob.worker.runtime.checkpoint_lock import CheckpointLock
from streamjob.worker.runtime.operators import SnapshotFn, StreamOperator
from streamjob.worker.runtime.split_watermarks import SplitWatermarks
from streamjob.worker.state.descriptors import ListStateDescriptor

log = logging.getLogger(__name__)

_SPLITS: ListStateDescriptor[Any] = ListStateDescriptor("__source_splits__")
_SPLIT_WATERMARKS: ListStateDescriptor[Any] = ListStateDescriptor("__split_watermarks__")
_LEGACY_BUFFER = 10_000


class SourceOperator(StreamOperator):
    """Reads a pull-based source; split positions are its operator state.

    With a ``WatermarkStrategy`` (``from_source(source, strategy, name)``) it generates watermarks per
    split (``runtime/split_watermarks.py``) and keeps each split's watermark in union operator state.
    """

    fn: Source

    def open(self) -> None:
        super().open()
        source = self.fn
        if source.redistribution == "union":
            self._splits = self.op_state.get_union_list_state(_SPLITS)
        else:
            self._splits = self.op_state.get_list_state(_SPLITS)
        restored = list(self._splits.get()) if self.restored else None
        info = self.setup.info
        self.reader: SourceReader = source.create_reader(
            SourceReaderContext(info.subtask_index, info.parallelism, info.attempt), restored
        )
        strategy = self.setup.transformation.options.get("watermarks")
        self.watermarks: SplitWatermarks | None = None
        if strategy is not None:
            self._split_watermarks = self.op_state.get_union_list_state(_SPLIT_WATERMARKS)
            self.watermarks = SplitWatermarks(strategy, self._split_watermarks.get() if self.restored else ())
            self.watermarks.sync(self.reader.active_splits())
            self.poll = self._poll_splits  # type: ignore[method-assign]  # a source without one pays nothing

    def poll(self, max_records: int) -> list[Any] | None:
        """The next batch, ``[]`` if none yet, None when the source is finished."""
        return self.reader.poll(max_records)

    def _poll_splits(self, max_records: int) -> list[Any] | None:
        """``poll`` with per-split watermarks: each run of records advances its own split's generator."""
        runs = self.reader.poll_splits(max_records)
        watermarks = self.watermarks
        assert watermarks is not None
        if runs is None:
            return None
        for split, records in runs:
            watermarks.on_records(split, records)
        watermarks.sync(self.reader.active_splits())  # after the records: a split finished by them is released
        if len(runs) == 1:
            return runs[0][1]
        return [r for _, records in runs for r in records]

    def on_watermark(self, upstream: int) -> tuple[int, list[Any]]:
        if self.watermarks is None or upstream == MAX_WATERMARK:
            return upstream, []
        return self.watermarks.current(), []

    def is_idle(self) -> bool:
        """Every split idle (``with_idleness``): the task tells its consumers."""
        return self.watermarks is not None and self.watermarks.is_idle()

    def idle_delay_s(self) -> float:
        """How long to wait after an empty poll."""
        return self.reader.next_poll_delay_s()

    def before_snapshot(self, checkpoint_id: int) -> None:
        self._splits.update(self.reader.snapshot())
        if self.watermarks is not None:
            self._split_watermarks.update(self.watermarks.snapshot())

    def positions(self) -> list[Any]:
        """The current split positions (for metadata and logs)."""
        return self.reader.snapshot()

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            super().close()


class _LegacyContext(SourceContext):
    def __init__(self, operator: LegacySourceOperator) -> None:
        self.op = operator

    def collect(self, record: Any) -> None:
        op = self.op
        with op.lock:
            while len(op.buffer) >= _LEGACY_BUFFER and not op.stopping:
                op.lock.wait_for_space(0.1)
            op.buffer.append(record)

    def collect_with_timestamp(self, record: Any, timestamp_ms: int) -> None:
        self._undeclared("collect_with_timestamp")
        self.collect(record)

    def emit_watermark(self, watermark: Any) -> None:
        self._undeclared("emit_watermark")

    def _undeclared(self, call: str) -> None:
        op = self.op
        if not op.warned_undeclared:
            op.warned_undeclared = True
            log.warning(
                "%s calls ctx.%s from code outside its class, so its stream was built without timestamps and "
                "they are dropped: set `emits_timestamps = True` on the class",
                type(op.fn).__name__,
                call,
            )

    def get_checkpoint_lock(self) -> CheckpointLock:
        return self.op.lock


class _TimestampedContext(_LegacyContext):
    """The context of a source that emits timestamps: records are ``(timestamp, record)`` pairs (None: none)."""

    def collect(self, record: Any) -> None:
        self.collect_with_timestamp(record, None)  # type: ignore[arg-type]  # Flink's "no timestamp"

    def collect_with_timestamp(self, record: Any, timestamp_ms: int) -> None:
        op = self.op
        with op.lock:
            while len(op.buffer) >= _LEGACY_BUFFER and not op.stopping:
                op.lock.wait_for_space(0.1)
            op.buffer.append((timestamp_ms, record))
            op.idle = False

    def emit_watermark(self, watermark: Any) -> None:
        op = self.op
        value = int(getattr(watermark, "timestamp_ms", watermark))
        with op.lock:
            op.marks.append((len(op.buffer), value))  # after the records collected so far, before the next ones
            op.idle = False

    def mark_as_temporarily_idle(self) -> None:
        with self.op.lock:
            self.op.idle = True


class LegacySourceOperator(StreamOperator):
    """Runs ``SourceFunction.run`` on a thread; the task drains its records under the lock.

    A source that emits timestamps (``api.sources.emits_timestamps``) fills its buffer with
    ``(timestamp, record)`` pairs and notes each ``emit_watermark`` as ``(position in the buffer,
    watermark)``: a poll drains up to the first such mark and the watermark follows those records.
    """

    def open(self) -> None:
        super().open()
        self.lock = CheckpointLock()
        self.buffer: list[Any] = []
        self.stopping = False
        self.finished = False
        self.error: BaseException | None = None
        self.timestamped = bool(self.setup.transformation.options.get("stamped_source"))
        self.marks: list[tuple[int, int]] = []  # emit_watermark calls not drained yet
        self.drained_marks: list[tuple[int, int]] = []  # those taken with the buffer at a barrier
        self.watermark = MIN_WATERMARK  # the largest watermark drained
        self.idle = False
        self.warned_undeclared = False
        self.drained_at_barrier: list[Any] = []
        self._thread = threading.Thread(target=self._run, name=f"source-{self.uid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.fn.run(_TimestampedContext(self) if self.timestamped else _LegacyContext(self))
        except BaseException as err:
            self.error = err
        finally:
            self.finished = True

    def poll(self, max_records: int) -> list[Any] | None:
        """Drains what the thread collected; never waits for the lock (the source thread yields it next)."""
        if self.error is not None:
            raise self.error
        if not self.lock.try_acquire_for_task():
            return []
        try:
            finished = self.finished  # read before draining: records collected after it stay for the next poll
            if self.marks:
                return self._drain_to_mark()
            batch, self.buffer = self.buffer, []
        finally:
            self.lock.release()  # wakes a source thread waiting for space
        if not batch and finished:
            return None
        return batch

    def _drain_to_mark(self) -> list[Any]:
        """The records before the first watermark mark; that watermark is reached once they ran."""
        position, watermark = self.marks.pop(0)
        batch, self.buffer = self.buffer[:position], self.buffer[position:]
        self.marks = [(p - position, w) for p, w in self.marks]
        self.watermark = max(self.watermark, watermark)
        return batch

    def take_drained(self) -> list[tuple[list[Any], int | None]]:
        """What the barrier's snapshot drained, cut at its watermark marks: ``(records, watermark after them)``."""
        drained, self.drained_at_barrier = self.drained_at_barrier, []
        marks, self.drained_marks = self.drained_marks, []
        pieces: list[tuple[list[Any], int | None]] = []
        start = 0
        for position, watermark in marks:
            pieces.append((drained[start:position], watermark))
            start = position
        pieces.append((drained[start:], None))
        return pieces

    def on_watermark(self, upstream: int) -> tuple[int, list[Any]]:
        if not self.timestamped or upstream == MAX_WATERMARK:
            return upstream, []
        return self.watermark, []

    def is_idle(self) -> bool:
        """``mark_as_temporarily_idle`` was called and nothing was emitted since."""
        return self.idle

    def idle_delay_s(self) -> float:
        return 0.005

    def snapshot(self, checkpoint_id: int, timestamp_ms: int) -> SnapshotFn:
        """Takes the snapshot under the checkpoint lock; records drained first are emitted before the barrier."""
        self.lock.acquire_for_task()
        try:
            self.drained_at_barrier = self.buffer
            self.buffer = []
            self.drained_marks, self.marks = self.marks, []
            return super().snapshot(checkpoint_id, timestamp_ms)
        finally:
            self.lock.release()

    def close(self) -> None:
        self.stopping = True
        self.lock.withdraw()
        try:
            self.fn.cancel()
        finally:
            self._thread.join(timeout=5)
            super().close()
