"""The interval join operator: two keyed inputs, each record buffered until no partner can still come.

Semantics as Flink's ``IntervalJoinOperator``: a left record at ``t`` meets the right records of its
key at ``[t + lower, t + upper]`` (the API turned exclusive bounds into inclusive ones), a right record
at ``t`` the left ones at ``[t - upper, t - lower]``; each record is buffered (per key, map state
``timestamp -> records``) and checked against the other side's buffer, in timestamp order. A record
older than the operator's watermark is late and dropped (``late_records_dropped``). A left record is
dropped from its buffer when the watermark reaches ``t + upper`` (``t`` when ``upper <= 0``), a right
one at ``t - lower`` (``t`` when ``lower >= 0``): one event-time timer per key and cleanup time.

Buffers and timers are keyed state and move with their key group on a rescale; the watermark is
kept in union operator state (the smallest of the old subtasks' on restore), so a record late
before a failure is late after it too. Buffered records use the job's internal state serializer
(``env.set_internal_state_serializer``), like window contents.

Callers: ``two_input.create_two_input_operator``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api.watermarks import MIN_WATERMARK
from streamjob.worker.runtime.co_operators import side_timestamps
from streamjob.worker.runtime.context import ListCollector, with_job_types
from streamjob.worker.runtime.operators import StreamOperator
from streamjob.worker.state.descriptors import ListStateDescriptor, MapStateDescriptor


class _JoinContext:
    """``ProcessJoinFunction``'s context: the pair's timestamps."""

    __slots__ = ("left", "right")

    def __init__(self) -> None:
        self.left = 0
        self.right = 0

    def get_left_timestamp(self) -> int:
        """The left record's event timestamp."""
        return self.left

    def get_right_timestamp(self) -> int:
        """The right record's event timestamp."""
        return self.right

    def get_timestamp(self) -> int:
        """The pair's timestamp: the larger of the two."""
        return max(self.left, self.right)

    def timestamp(self) -> int:
        """As ``get_timestamp`` (the output's timestamp)."""
        return max(self.left, self.right)


class IntervalJoinOperator(StreamOperator):
    """``interval_join(...).between(lower, upper).process(f)``; see the module docstring."""

    def open(self) -> None:
        super().open()
        assert self.backend is not None
        options = self.setup.transformation.options
        serializer = options["state_serializer"]()
        types = self.setup.info.job_types
        self._buffers = tuple(
            self.backend.get_state(with_job_types(MapStateDescriptor(name, serializer=serializer), types))
            for name in ("__interval_join_left__", "__interval_join_right__")
        )
        self._lower, self._upper = int(options["lower_ms"]), int(options["upper_ms"])
        self._timestamps = side_timestamps(options)
        self._ctx = _JoinContext()
        self._collector = ListCollector()
        self.late_records_dropped = 0
        self._watermark_state = self.op_state.get_union_list_state(ListStateDescriptor("__watermark__"))
        restored = [int(w) for w in self._watermark_state.get()] if self.restored else []
        self._watermark = min(restored) if restored else MIN_WATERMARK

    def _cleanup_time(self, side: int, timestamp: int) -> int:
        if side == 0:
            return timestamp + self._upper if self._upper > 0 else timestamp
        return timestamp - self._lower if self._lower < 0 else timestamp

    def process_batch(self, batch: list[Any]) -> list[Any]:
        assert self.backend is not None
        backend, select = self.backend, self.setup.transformation.key_selector
        process, ctx, collector = self.fn.process_element, self._ctx, self._collector
        buffers, timestamps, watermark = self._buffers, self._timestamps, self._watermark
        for record in batch:
            side, value = record
            backend.set_current_key(select(record))
            timestamp = timestamps[side](value)
            if watermark != MIN_WATERMARK and timestamp < watermark:
                self.late_records_dropped += 1
                continue
            ours, other = buffers[side], buffers[1 - side]
            kept = ours.get(timestamp)
            ours.put(timestamp, [value] if kept is None else [*kept, value])
            if side == 0:
                low, high = timestamp + self._lower, timestamp + self._upper
            else:
                low, high = timestamp - self._upper, timestamp - self._lower
            for other_ts in sorted(other.keys()):
                if not low <= other_ts <= high:
                    continue
                for partner in other.get(other_ts):
                    if side == 0:
                        ctx.left, ctx.right = timestamp, other_ts
                        process(value, partner, ctx, collector)
                    else:
                        ctx.left, ctx.right = other_ts, timestamp
                        process(partner, value, ctx, collector)
            backend.register_event_time_timer(self._cleanup_time(side, timestamp))
        return collector.reset()

    def on_watermark(self, watermark: int) -> tuple[int, list[Any]]:
        assert self.backend is not None
        self._watermark = max(self._watermark, watermark)
        backend = self.backend
        for fired, key in backend.pop_due_event_timers(watermark):
            backend.set_current_key(key)
            for side, buffer in enumerate(self._buffers):
                for timestamp in list(buffer.keys()):
                    if self._cleanup_time(side, timestamp) <= fired:
                        buffer.remove(timestamp)
        return watermark, []

    def next_timer(self) -> int | None:
        return None  # event-time timers only: they fire with the watermark

    def before_snapshot(self, checkpoint_id: int) -> None:
        self._watermark_state.update([self._watermark])


__all__ = ["IntervalJoinOperator"]
