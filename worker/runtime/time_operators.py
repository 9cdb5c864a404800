"""Operators of event time: the timestamp/watermark assigner and the windows of event (or processing) time.

``TimestampsOperator`` runs a ``WatermarkStrategy`` over its input: it reads each record's
timestamp and, when the task asks after a batch (``on_watermark``), says how far event time went.
Like Flink's assigner it replaces the watermarks coming from upstream, except the final
``MAX_WATERMARK`` of a bounded input, which always passes.

``EventWindowOperator`` drives a ``WindowCore`` (``runtime/event_windows.py``): records in, window
results out when the watermark (or the clock, for processing-time assigners) passes a window's end;
late records go to the late-data side output (``side_output_late_data``) or are counted and dropped.

``TriggerWindowOperator`` drives a ``TriggerWindowCore`` (``runtime/trigger_windows.py``) instead when the
window has a trigger or an evictor, or is a global (count) window.

All keep their last watermark in union operator state: after a restore or a rescale an instance
starts from the smallest watermark any old instance had, so records that were late before the
failure are late after it too, and no window fires twice. Callers: ``operators.create_operator``
and the task's watermark handling.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api.triggers import EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger
from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK, IdlenessTracker, WatermarkStrategy
from streamjob.worker.api.windows import GlobalWindows, WindowAssigner
from streamjob.worker.errors import PipelineError
from streamjob.worker.graph.transformations import Kind
from streamjob.worker.runtime.context import now_ms, with_job_types
from streamjob.worker.runtime.direct_windows import direct_window_core
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.runtime.operators import OperatorSetup, StreamOperator
from streamjob.worker.runtime.trigger_windows import TriggerWindowCore
from streamjob.worker.state.descriptors import ListStateDescriptor, MapStateDescriptor


def _watermark_state(op: StreamOperator) -> tuple[Any, int]:
    """The operator's union state of watermarks and the floor it restores (the minimum, or MIN)."""
    state = op.op_state.get_union_list_state(ListStateDescriptor("__watermark__"))
    restored = [int(w) for w in state.get()] if op.restored else []
    return state, min(restored) if restored else MIN_WATERMARK


class TimestampsOperator(StreamOperator):
    """``assign_timestamps_and_watermarks``: tracks the records' timestamps; records pass unchanged."""

    def open(self) -> None:
        super().open()
        strategy: WatermarkStrategy = self.setup.transformation.options["strategy"]
        self._strategy = strategy
        self._generator = strategy.create_generator()
        self._timestamp_of = strategy.record_timestamp_function()
        self._state, self._floor = _watermark_state(self)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        # The strategies' generators keep the largest timestamp (and the time of the last record):
        # one call with the batch's largest timestamp is the same as one call per record.
        if batch:
            self._generator.on_event(int(max(map(self._timestamp_of, batch))))
        return batch

    def on_watermark(self, upstream: int) -> tuple[int, list[Any]]:
        if upstream == MAX_WATERMARK:
            return MAX_WATERMARK, []
        return max(self._floor, self._generator.current_watermark()), []

    def before_snapshot(self, checkpoint_id: int) -> None:
        self._state.update([max(self._floor, self._generator.current_watermark())])

    def is_idle(self) -> bool:
        """True once ``with_idleness``'s timeout passed without records (never without idleness)."""
        return isinstance(self._generator, IdlenessTracker) and self._generator.is_idle()


class EventWindowOperator(StreamOperator):
    """Keyed windows with incremental aggregation, lateness and a late-data output (see the module docstring)."""

    def open(self) -> None:
        super().open()
        assert self.backend is not None
        options = self.setup.transformation.options
        serializer = options["state_serializer"]()
        descriptor = with_job_types(MapStateDescriptor("__windows__", serializer=serializer), self.setup.info.job_types)
        strategy = options.get("timestamps")
        self._timestamp_of = None if strategy is None else strategy.record_timestamp_function()
        self.late_records_dropped = 0
        kind, incremental = options["window_aggregation"]
        self._stamped_in = bool(options.get("stamped_in"))
        self._core = direct_window_core(
            self.backend,
            options["assigner"],
            _values_of_pairs(aggregation_for(kind, incremental), self._stamped_in),
            self.fn,
            allowed_lateness_ms=options.get("allowed_lateness_ms", 0),
            descriptor=descriptor,
            now=now_ms,
        )
        self._state, floor = _watermark_state(self)
        self._core.watermark = floor
        self._core.side_outputs = self.side_outputs
        if options.get("result_timestamps"):
            self._core.stamp_results_with_window_end()  # the results are (window.max_timestamp(), result) pairs
        self._late_tag: str | None = options.get("late_tag")

    def process_batch(self, batch: list[Any]) -> list[Any]:
        # processing time: every record of the batch gets the same clock reading
        try:
            self._core.process_batch(batch, self.setup.transformation.key_selector, self._timestamp_of, now_ms())
        except TypeError:
            if self._stamped_in and self._timestamp_of is not None and any(r[0] is None for r in batch):
                raise PipelineError(
                    "an event-time window got a record without a timestamp: its source emitted it with "
                    "ctx.collect(record); use ctx.collect_with_timestamp(record, timestamp_ms) for every record"
                ) from None
            raise
        return self._take()

    def _take(self) -> list[Any]:
        out, late = self._core.take()
        if late and self._stamped_in:
            late = [value for _, value in late]
        if late:
            buffer = None if self._late_tag is None else self.side_outputs.get(self._late_tag)
            if buffer is None:
                self.late_records_dropped += len(late)
            else:
                buffer.extend(late)
        return out

    def on_watermark(self, upstream: int) -> tuple[int, list[Any]]:
        if self._timestamp_of is None:
            return upstream, []  # processing-time windows fire by the clock (not at the end of input, as in Flink)
        self._core.advance_watermark(upstream)
        return upstream, self._take()

    def fire_timers(self, now: int) -> list[Any]:
        if self._timestamp_of is not None:
            return []
        self._core.fire_processing_time(now)
        return self._take()

    def next_timer(self) -> int | None:
        if self._timestamp_of is not None or self.backend is None:
            return None
        return self.backend.next_timer_time()

    def before_snapshot(self, checkpoint_id: int) -> None:
        if isinstance(self._core, WindowCore):  # not a TriggerWindowCore
            self._core.flush()  # the RocksDB fast path's cached accumulators (rocks_windows.py)
        self._state.update([self._core.watermark])


class TriggerWindowOperator(EventWindowOperator):
    """Keyed windows with a trigger and/or an evictor, and global windows (``runtime/trigger_windows.py``)."""

    def open(self) -> None:
        StreamOperator.open(self)
        assert self.backend is not None
        options = self.setup.transformation.options
        serializer = with_job_types(
            MapStateDescriptor("__windows__", serializer=options["state_serializer"]()), self.setup.info.job_types
        ).serializer
        assigner = options["assigner"]
        strategy = options.get("timestamps")
        self._timestamp_of = None if strategy is None else strategy.record_timestamp_function()
        self.late_records_dropped = 0
        kind, incremental = options["window_aggregation"]
        self._stamped_in = bool(options.get("stamped_in"))
        self._core = TriggerWindowCore(  # type: ignore[assignment]
            self.backend,
            assigner,
            options.get("trigger") or default_trigger(assigner),
            options.get("evictor"),
            _values_of_pairs(aggregation_for(kind, incremental), self._stamped_in),
            self.fn,
            allowed_lateness_ms=options.get("allowed_lateness_ms", 0),
            serializer=serializer,
            now=now_ms,
        )
        self._state, floor = _watermark_state(self)
        self._core.watermark = floor
        self._core.side_outputs = self.side_outputs
        if options.get("result_timestamps"):
            self._core.stamp_results_with_window_end()  # the results are (window.max_timestamp(), result) pairs
        self._late_tag = options.get("late_tag")

    def on_watermark(self, upstream: int) -> tuple[int, list[Any]]:
        self._core.advance_watermark(upstream)  # trigger timers of event time, whatever the assigner
        return upstream, self._take()

    def fire_timers(self, now: int) -> list[Any]:
        self._core.fire_processing_time(now)
        return self._take()

    def next_timer(self) -> int | None:
        return None if self.backend is None else self.backend.next_timer_time()


def _values_of_pairs(aggregation: WindowAggregation, stamped: bool) -> WindowAggregation:
    """On a stamped stream (``(timestamp, value)`` pairs, ``api/stamped.py``) the window adds the values."""
    if not stamped:
        return aggregation
    add = aggregation.add

    def add_value(pair: Any, acc: Any) -> Any:
        return add(pair[1], acc)

    return WindowAggregation(
        aggregation.create,
        add_value,
        aggregation.merge,
        aggregation.result,
        buffers_records=aggregation.buffers_records,
        stores_pairs=True,
    )


def default_trigger(assigner: WindowAssigner) -> Trigger:
    """Flink's default trigger of ``assigner``: event time, processing time, or never (global windows)."""
    if isinstance(assigner, GlobalWindows):
        return NeverTrigger()
    return EventTimeTrigger() if assigner.is_event_time else ProcessingTimeTrigger()


def uses_trigger_operator(options: dict[str, Any]) -> bool:
    """Whether a window needs ``TriggerWindowOperator`` (a trigger, an evictor, or global windows)."""
    return bool(options.get("trigger") or options.get("evictor") or isinstance(options.get("assigner"), GlobalWindows))


TIME_KINDS = frozenset({Kind.TIMESTAMPS, Kind.EVENT_WINDOW})
"""The transformation kinds ``create_time_operator`` builds."""


def create_time_operator(setup: OperatorSetup) -> StreamOperator:
    """The operator of a ``TIME_KINDS`` transformation."""
    if setup.transformation.kind is Kind.TIMESTAMPS:
        return TimestampsOperator(setup)
    if uses_trigger_operator(setup.transformation.options):
        return TriggerWindowOperator(setup)
    return EventWindowOperator(setup)


def aggregation_for(kind: str, fn: Any) -> WindowAggregation:
    """The accumulator rule of ``window(...).aggregate/reduce/process``."""
    if kind == "aggregate":
        return WindowAggregation.of_aggregate(fn)
    if kind == "reduce":
        return WindowAggregation.of_reduce(fn)
    return WindowAggregation.of_records()


__all__ = [
    "TIME_KINDS",
    "EventWindowOperator",
    "TimestampsOperator",
    "TriggerWindowOperator",
    "aggregation_for",
    "create_time_operator",
    "default_trigger",
]
