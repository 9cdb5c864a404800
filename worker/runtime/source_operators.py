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
from streamjob.worker.api.watermarks import MAX_WATERMARK
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

    def get_checkpoint_lock(self) -> CheckpointLock:
        return self.op.lock


class LegacySourceOperator(StreamOperator):
    """Runs ``SourceFunction.run`` on a thread; the task drains its records under the lock."""

    def open(self) -> None:
        super().open()
        self.lock = CheckpointLock()
        self.buffer: list[Any] = []
        self.stopping = False
        self.finished = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"source-{self.uid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.fn.run(_LegacyContext(self))
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
            batch, self.buffer = self.buffer, []
        finally:
            self.lock.release()  # wakes a source thread waiting for space
        if not batch and finished:
            return None
        return batch

    def idle_delay_s(self) -> float:
        return 0.005

    def snapshot(self, checkpoint_id: int, timestamp_ms: int) -> SnapshotFn:
        """Takes the snapshot under the checkpoint lock; records drained first are emitted before the barrier."""
        self.lock.acquire_for_task()
        try:
            self.drained_at_barrier = self.buffer
            self.buffer = []
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
