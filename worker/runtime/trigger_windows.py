"""Keyed windows with a trigger and an evictor: global and count windows, custom and continuous triggers.

Semantics as Flink's ``WindowOperator`` and ``EvictingWindowOperator`` document them:

- each record goes into every window its assigner gives it (the record's timestamp for event-time
  assigners, the task's clock for processing-time ones, the one ``GlobalWindow`` for ``GlobalWindows``);
  a window is *late* once its cleanup time (``max_timestamp + allowed_lateness``, event time) is
  ``<= watermark`` and takes no more records; a record all of whose windows are late and whose
  ``timestamp + allowed_lateness <= watermark`` goes to the late-data side output (or is dropped);
- after adding the record the trigger's ``on_element`` decides; its timers call ``on_event_time`` /
  ``on_processing_time``; FIRE emits the window (its accumulator's result, or with an evictor the
  records left after ``evict_before``, ``evict_after`` running after the function); PURGE drops the
  contents;
- at a window's cleanup time its contents and the trigger's state (``clear``) are dropped; global
  windows have none, so a count window's last partial window is never emitted (as in Flink).

Without an evictor a window holds an accumulator (aggregate/reduce) or its records (process); with
one it holds ``[timestamp, record]`` pairs; records and pairs are one state entry each, never rewritten
per record (``runtime/window_state.py``). Trigger timers are scoped to a window through a map of
``(domain, time) -> windows`` next to the backend's ``(time, key)`` timers; trigger state is a map
keyed by ``(state name, window)``. All of it is keyed state, so it is in every checkpoint and
rescales by key group. Session (merging) windows take only the default trigger (``EventWindowOperator``).
The default trigger without an evictor keeps using ``WindowCore``'s fast path. Callers:
``time_operators.create_time_operator``; unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.api.evictors import Evictor, TimestampedValue
from streamjob.worker.api.triggers import Trigger, TriggerResult
from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamjob.worker.api.windows import GlobalWindow, ProcessWindowFunction, TimeWindow, WindowAssigner, WindowContext
from streamjob.worker.runtime.context import ListCollector, StampingCollector
from streamjob.worker.runtime.event_windows import WindowAggregation
from streamjob.worker.runtime.window_state import BufferedWindows, window_state
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor, ReducingStateDescriptor, ValueStateDescriptor

_EVENT, _PROCESSING = 0, 1
_GLOBAL = GlobalWindow()
_GLOBAL_SPAN = (GlobalWindow.start, GlobalWindow.end)


def _window_of(span: tuple[int, int]) -> TimeWindow | GlobalWindow:
    return _GLOBAL if span == _GLOBAL_SPAN else TimeWindow(span[0], span[1])


class _ValueView:
    """``ValueState`` of one key and window, over the trigger state map."""

    def __init__(self, state: Any, key: Any, default: Any) -> None:
        self._state, self._key, self._default = state, key, default

    def value(self) -> Any:
        found = self._state.get(self._key)
        return self._default if found is None else found

    def update(self, value: Any) -> None:
        if value is None:
            self.clear()
        else:
            self._state.put(self._key, value)

    def clear(self) -> None:
        self._state.remove(self._key)


class _ReducingView:
    """``ReducingState`` of one key and window, over the trigger state map."""

    def __init__(self, state: Any, key: Any, reduce: Callable[[Any, Any], Any]) -> None:
        self._state, self._key, self._reduce = state, key, reduce

    def get(self) -> Any:
        return self._state.get(self._key)

    def add(self, value: Any) -> None:
        current = self._state.get(self._key)
        self._state.put(self._key, value if current is None else self._reduce(current, value))

    def clear(self) -> None:
        self._state.remove(self._key)


class _TriggerContext:
    """The ``TriggerContext`` of the current key and window (one object, re-pointed per call)."""

    def __init__(self, core: TriggerWindowCore) -> None:
        self._core = core
        self.span: tuple[int, int] = _GLOBAL_SPAN

    def get_current_processing_time(self) -> int:
        return self._core.now()

    def get_current_watermark(self) -> int:
        return self._core.watermark

    def register_event_time_timer(self, timestamp_ms: int) -> None:
        self._core.register_timer(_EVENT, int(timestamp_ms), self.span)

    def register_processing_time_timer(self, timestamp_ms: int) -> None:
        self._core.register_timer(_PROCESSING, int(timestamp_ms), self.span)

    def delete_event_time_timer(self, timestamp_ms: int) -> None:
        self._core.delete_timer(_EVENT, int(timestamp_ms), self.span)

    def delete_processing_time_timer(self, timestamp_ms: int) -> None:
        self._core.delete_timer(_PROCESSING, int(timestamp_ms), self.span)

    def get_partitioned_state(self, descriptor: Any) -> Any:
        key = (descriptor.name, self.span)
        state = self._core.trigger_state
        if isinstance(descriptor, ReducingStateDescriptor):
            return _ReducingView(state, key, descriptor.reduce)
        if isinstance(descriptor, ValueStateDescriptor):
            return _ValueView(state, key, descriptor.default_value())
        raise TypeError(
            f"a trigger's partitioned state takes a ValueStateDescriptor or ReducingStateDescriptor, "
            f"got {type(descriptor).__name__}"
        )


class TriggerWindowCore:
    """One keyed window operator's logic with a trigger and an optional evictor (see the module docstring)."""

    def __init__(
        self,
        backend: KeyedStateBackend,
        assigner: WindowAssigner,
        trigger: Trigger,
        evictor: Evictor | None,
        aggregation: WindowAggregation,
        window_function: ProcessWindowFunction[Any, Any, Any] | None,
        *,
        allowed_lateness_ms: int = 0,
        serializer: Any = None,
        now: Callable[[], int],
    ) -> None:
        self.backend = backend
        self.assigner = assigner
        self.trigger = trigger
        self.evictor = evictor
        self.aggregation = aggregation
        self.window_function = window_function
        self.event_time = assigner.is_event_time
        self.lateness = allowed_lateness_ms if self.event_time else 0
        self.watermark = MIN_WATERMARK
        self.now = now
        # With an evictor or for process() the records, one entry each (never rewritten per record).
        self.contents: Any = window_state(
            backend,
            MapStateDescriptor("__windows__", serializer=serializer),
            buffers_records=evictor is not None or aggregation.buffers_records,
            merge=aggregation.merge,
        )
        self.timers: Any = backend.get_state(MapStateDescriptor("__window_timers__"))
        self.trigger_state: Any = backend.get_state(MapStateDescriptor("__trigger_state__", serializer=serializer))
        self.ctx = _TriggerContext(self)
        self.out: Any = ListCollector()  # a StampingCollector once ``stamp_results`` (the operator's choice)
        self.stamp_results = False
        self.late: list[Any] = []
        self.side_outputs: dict[str, list[Any]] = {}

    # -- timers scoped to a window ----------------------------------------------------------------
    def register_timer(self, domain: int, ts: int, span: tuple[int, int]) -> None:
        """A timer of the current key at ``ts`` for the window ``span`` (registering twice does nothing)."""
        spans = self._spans(domain, ts)
        if span in spans:
            return
        self.timers.put((domain, ts), [*spans, span])
        if domain == _EVENT:
            self.backend.register_event_time_timer(ts)
        else:
            self.backend.register_processing_time_timer(ts)

    def delete_timer(self, domain: int, ts: int, span: tuple[int, int]) -> None:
        """Deletes that timer; the backend's ``(ts, key)`` timer goes with the last window using it."""
        spans = self._spans(domain, ts)
        if span not in spans:
            return
        spans.remove(span)
        if spans:
            self.timers.put((domain, ts), spans)
            return
        self.timers.remove((domain, ts))
        if domain == _EVENT:
            self.backend.delete_event_time_timer(ts)
        else:
            self.backend.delete_processing_time_timer(ts)

    def _spans(self, domain: int, ts: int) -> list[tuple[int, int]]:
        """The windows of the current key with a timer at ``ts`` (tuples again after a RocksDB round trip)."""
        return [(int(s[0]), int(s[1])) for s in self.timers.get((domain, ts)) or ()]

    def _cleanup_time(self, span: tuple[int, int]) -> int:
        if span == _GLOBAL_SPAN:
            return MAX_WATERMARK
        return min(span[1] - 1 + self.lateness, MAX_WATERMARK)

    # -- records ------------------------------------------------------------------------------------
    def process_batch(
        self, batch: list[Any], select: Callable[[Any], Any], timestamp_of: Callable[[Any], int] | None, now: int
    ) -> None:
        """Adds a batch: keys by ``select``, event timestamps by ``timestamp_of`` (None: the stream has none)."""
        set_key = self.backend.set_current_key
        spans_of, event_time = self.assigner.assign_spans, self.event_time
        lateness, ctx, trigger = self.lateness, self.ctx, self.trigger
        for r in batch:
            ts = None if timestamp_of is None else timestamp_of(r)
            key = select(r)
            set_key(key)
            wm = self.watermark
            skipped = True
            for span in spans_of(ts if event_time and ts is not None else now):
                cleanup = self._cleanup_time(span)
                if event_time and cleanup <= wm:
                    continue
                skipped = False
                self._add(span, r, ts)
                ctx.span = span
                result = trigger.on_element(r, MIN_WATERMARK if ts is None else ts, _window_of(span), ctx)
                self._act(key, span, result)
                if cleanup != MAX_WATERMARK:
                    self.register_timer(_EVENT if event_time else _PROCESSING, cleanup, span)
            if skipped and event_time and ts is not None and ts + lateness <= wm:
                self.late.append(r)

    def _add(self, span: tuple[int, int], record: Any, ts: int | None) -> None:
        contents = self.contents
        if isinstance(contents, BufferedWindows):
            value = record[1] if self.aggregation.stores_pairs else record
            contents.append(span, value if self.evictor is None else [ts, value])
            return
        stored = contents.get(span)
        if stored is None and not contents.contains(span):
            stored = self.aggregation.create()
        contents.put(span, self.aggregation.add(record, stored))

    def _act(self, key: Any, span: tuple[int, int], result: TriggerResult) -> None:
        if result is TriggerResult.CONTINUE:
            return
        if result.is_fire:
            stored = self.contents.get(span)
            if stored is not None or self.contents.contains(span):
                self._emit(key, span, stored)
        if result.is_purge:
            self.contents.remove(span)

    # -- time -------------------------------------------------------------------------------------------
    def advance_watermark(self, watermark: int) -> None:
        """Calls the triggers of the event-time timers the watermark reached (and those they register)."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        while due := self.backend.pop_due_event_timers(watermark):
            for ts, key in due:
                self._on_timer(_EVENT, ts, key)

    def fire_processing_time(self, now_ms: int) -> None:
        """Calls the triggers of the processing-time timers that are due."""
        while due := self.backend.pop_due_timers(now_ms):
            for ts, key in due:
                self._on_timer(_PROCESSING, ts, key)

    def _on_timer(self, domain: int, ts: int, key: Any) -> None:
        self.backend.set_current_key(key)
        spans = self._spans(domain, ts)
        self.timers.remove((domain, ts))
        ctx, trigger = self.ctx, self.trigger
        cleans = (domain == _EVENT) == self.event_time
        for span in spans:
            window = _window_of(span)
            ctx.span = span
            if domain == _EVENT:
                result = trigger.on_event_time(ts, window, ctx)
            else:
                result = trigger.on_processing_time(ts, window, ctx)
            self._act(key, span, result)
            if cleans and ts == self._cleanup_time(span):
                self.contents.remove(span)
                trigger.clear(window, ctx)

    # -- output -----------------------------------------------------------------------------------------
    def stamp_results_with_window_end(self) -> None:
        """Each result is ``(window.max_timestamp(), result)`` from now on (event time after a window, as Flink)."""
        self.out = StampingCollector()
        self.stamp_results = True

    def _emit(self, key: Any, span: tuple[int, int], stored: Any) -> None:
        window = _window_of(span)
        if self.stamp_results:
            self.out.ts = window.max_timestamp()
        aggregation = self.aggregation
        if self.evictor is None:
            result = aggregation.result(stored)
        else:
            elements = [TimestampedValue(value, ts) for ts, value in stored]
            self.evictor.evict_before(elements, len(elements), window, None)
            values = [e.value for e in elements]
            if aggregation.buffers_records:
                result = values
            else:
                acc = aggregation.create()
                for v in values:
                    acc = aggregation.add(v, acc)
                result = aggregation.result(acc)
            self.evictor.evict_after(elements, len(elements), window, None)
            self.contents.put(span, [[e.timestamp, e.value] for e in elements])
            if result is None and not aggregation.buffers_records:
                return  # a reduce over a window the evictor emptied has nothing to emit
        if self.window_function is None:
            self.out.collect(result)
            return
        elements_out = result if aggregation.buffers_records else [result]
        context = WindowContext(window, self.now(), self.watermark if self.event_time else None, self.side_outputs)
        self.window_function.process(key, context, elements_out, self.out)

    def take(self) -> tuple[list[Any], list[Any]]:
        """The window results and the late records produced since the last call."""
        late, self.late = self.late, []
        return self.out.reset(), late


__all__ = ["TriggerWindowCore"]
