"""Keyed windows driven by event time (or processing time): incremental state, timers, lateness, merging.

Semantics as Flink's ``WindowOperator`` documents them, with the default triggers:

- each record goes into every window its timestamp is assigned to; a window is *late* once
  ``window.max_timestamp() + allowed_lateness <= watermark`` and takes no more records;
- a record all of whose windows are late is late data if ``timestamp + allowed_lateness <=
  watermark``: it goes to the late-data side output when one is set, else it is dropped;
- the event-time trigger fires a window when the watermark reaches ``window.max_timestamp()``; a
  record added to a window whose end the watermark already passed (within the allowed lateness)
  fires the window again at once, with everything the window holds (a late firing);
- a window's state is dropped at ``max_timestamp() + allowed_lateness`` (its cleanup timer);
- session windows merge with every window they touch; their accumulators merge and the merged
  window's timer replaces the old ones.

State holds one accumulator per key and window (``aggregate`` / ``reduce``: one read and one
write per record and window, never the window's records), or the records themselves for a
``process`` function without pre-aggregation (one entry per record, read when the window fires:
``runtime/window_state.py``). Window state lives in map states of the keyed backend and the
windows' ends are the backend's keyed timers, so both are in every checkpoint and rescale by key
group. Callers: the window operator (``runtime/operators.py``); unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.api.watermarks import MIN_WATERMARK
from streamjob.worker.api.windows import ProcessWindowFunction, TimeWindow, WindowAssigner, WindowContext, merge_windows
from streamjob.worker.runtime.context import ListCollector, StampingCollector
from streamjob.worker.runtime.window_state import BufferedWindows, window_state
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor


class WindowAggregation:
    """How a window's accumulator is built: from an AggregateFunction, a reduce function, or a plain list."""

    def __init__(
        self,
        create: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        merge: Callable[[Any, Any], Any],
        result: Callable[[Any], Any],
        *,
        buffers_records: bool = False,
        stores_pairs: bool = False,
    ) -> None:
        self.create, self.add, self.merge, self.result = create, add, merge, result
        self.buffers_records = buffers_records
        self.stores_pairs = stores_pairs  # records are (timestamp, value) pairs; ``add`` takes the value

    @staticmethod
    def of_aggregate(fn: Any) -> WindowAggregation:
        """``aggregate(AggregateFunction)``: ``create_accumulator``, ``add``, ``merge``, ``get_result``."""
        merge = getattr(fn, "merge", None)

        def no_merge(a: Any, b: Any) -> Any:
            raise NotImplementedError(
                f"{type(fn).__name__} has no merge(a, b): session windows need one to merge accumulators"
            )

        return WindowAggregation(fn.create_accumulator, fn.add, merge or no_merge, fn.get_result)

    @staticmethod
    def of_reduce(fn: Any) -> WindowAggregation:
        """``reduce(f)``: the accumulator is the running reduction."""
        f = fn.reduce if hasattr(fn, "reduce") else fn

        def add(value: Any, acc: Any) -> Any:
            return value if acc is None else f(acc, value)

        def merge(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else f(a, b)

        return WindowAggregation(lambda: None, add, merge, lambda acc: acc)

    @staticmethod
    def of_records() -> WindowAggregation:
        """``process(ProcessWindowFunction)`` alone: the window keeps its records."""
        return WindowAggregation(
            list, lambda value, acc: [*acc, value], lambda a, b: a + b, lambda acc: acc, buffers_records=True
        )


class WindowCore:
    """One keyed window operator's logic over a keyed backend (see the module docstring)."""

    def __init__(
        self,
        backend: KeyedStateBackend,
        assigner: WindowAssigner,
        aggregation: WindowAggregation,
        window_function: ProcessWindowFunction[Any, Any, Any] | None,
        *,
        allowed_lateness_ms: int = 0,
        descriptor: MapStateDescriptor[Any, Any] | None = None,
        now: Callable[[], int],
    ) -> None:
        self.backend = backend
        self.assigner = assigner
        self.aggregation = aggregation
        self.window_function = window_function
        self.lateness = allowed_lateness_ms if assigner.is_event_time else 0
        self.event_time = assigner.is_event_time
        self.watermark = MIN_WATERMARK
        self.now = now
        self.state = window_state(
            backend,
            descriptor or MapStateDescriptor("__windows__"),
            buffers_records=aggregation.buffers_records,
            merge=aggregation.merge,
        )
        self.out: Any = ListCollector()  # a StampingCollector once ``stamp_results`` (the operator's choice)
        self.stamp_results = False
        self.late: list[Any] = []
        self.side_outputs: dict[str, list[Any]] = {}  # the operator's, for ``context.output`` in the window function
        if self.event_time:
            self._register = backend.register_event_time_timer
            self._delete = backend.delete_event_time_timer
        else:
            self._register = backend.register_processing_time_timer
            self._delete = backend.delete_processing_time_timer

    # -- records ------------------------------------------------------------------------------------
    def process_batch(
        self, batch: list[Any], select: Callable[[Any], Any], timestamp_of: Callable[[Any], int] | None, now: int
    ) -> None:
        """Adds a batch of records: their keys by ``select``, their timestamps by ``timestamp_of`` (None: ``now``).

        The per-record path of ``process`` with the lookups hoisted; a window's timers are registered
        when the window is created (one state read and one write per record and window after that).
        """
        if self.assigner.is_merging:
            for r in batch:
                self.process(select(r), r, now if timestamp_of is None else timestamp_of(r))
            return
        set_key = self.backend.set_current_key
        state = self.state
        get, put, contains = state.get, state.put, state.contains
        append = state.append if isinstance(state, BufferedWindows) else None
        pairs = self.aggregation.stores_pairs  # (timestamp, value) records: the window keeps the values
        create, add = self.aggregation.create, self.aggregation.add
        register, spans_of = self._register, self.assigner.assign_spans
        wm, lateness, event_time = self.watermark, self.lateness, self.event_time
        for r in batch:
            ts = now if timestamp_of is None else timestamp_of(r)
            key = select(r)
            set_key(key)
            skipped = True
            for span in spans_of(ts):
                end = span[1] - 1
                if event_time and end + lateness <= wm:
                    continue
                skipped = False
                if append is not None:
                    new = append(span, r[1] if pairs else r)  # the record alone is written, never the window
                    acc = None
                else:
                    acc = get(span)
                    new = acc is None and not contains(span)
                    acc = add(r, create() if new else acc)
                    put(span, acc)
                if event_time and end <= wm:
                    acc = get(span) if append is not None else acc
                    self._emit(key, TimeWindow(span[0], span[1]), acc)  # a late firing inside the lateness
                elif new:
                    register(end)
                if lateness and new:
                    register(end + lateness)
            if skipped and event_time and ts + lateness <= wm:
                self.late.append(r)

    def process(self, key: Any, value: Any, timestamp_ms: int) -> None:
        """Adds one record of ``key`` (its event timestamp, or the processing time)."""
        self.backend.set_current_key(key)
        windows = self.assigner.assign_windows(timestamp_ms)
        wm = self.watermark
        lateness = self.lateness
        skipped = True
        for window in windows:
            if self.assigner.is_merging:
                window = self._merge_into(window)
            if self.event_time and window.end - 1 + lateness <= wm:
                continue
            skipped = False
            span = (window.start, window.end)
            state = self.state
            if isinstance(state, BufferedWindows):
                state.append(span, value[1] if self.aggregation.stores_pairs else value)
            else:
                acc = state.get(span)
                if acc is None and not state.contains(span):
                    acc = self.aggregation.create()
                state.put(span, self.aggregation.add(value, acc))
            end = window.end - 1
            if self.event_time and end <= wm:
                self._emit(key, window, state.get(span))  # a late firing inside the allowed lateness
            else:
                self._register(end)
            if lateness:
                self._register(end + lateness)
        if skipped and self.event_time and timestamp_ms + lateness <= wm:
            self.late.append(value)

    def _merge_into(self, window: TimeWindow) -> TimeWindow:
        """Merges ``window`` with the current key's sessions it touches; returns the session holding it."""
        spans = self.state.keys()
        existing = [TimeWindow(s, e) for s, e in spans]
        for merged, members in merge_windows([*existing, window]):
            if window not in members:
                continue
            old = list(members)
            old.remove(window)  # the new window itself; the rest hold state
            if not old or (len(old) == 1 and old[0] == merged):
                return merged
            for m in old:
                self._delete(m.end - 1)
                if self.lateness:
                    self._delete(m.end - 1 + self.lateness)
            self.state.merge_into((merged.start, merged.end), [(m.start, m.end) for m in old])
            return merged
        return window  # unreachable: window is in one of the groups

    # -- time -------------------------------------------------------------------------------------------
    def advance_watermark(self, watermark: int) -> None:
        """Fires the event-time windows the watermark reached and drops those past their lateness."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        for ts, key in self.backend.pop_due_event_timers(watermark):
            self._on_timer(ts, key)

    def fire_processing_time(self, now_ms: int) -> None:
        """Fires the processing-time windows whose end passed."""
        for ts, key in self.backend.pop_due_timers(now_ms):
            self._on_timer(ts, key)

    def _on_timer(self, ts: int, key: Any) -> None:
        self.backend.set_current_key(key)
        if not self.assigner.is_merging:
            # Fixed-size windows: the window ending at ts (and the one whose lateness ends at ts) by lookup.
            size, state = self.assigner.size_ms, self.state
            span = (ts + 1 - size, ts + 1)
            acc = state.get(span)
            if acc is not None or state.contains(span):
                self._emit(key, TimeWindow(span[0], span[1]), acc)
                if not self.lateness:
                    state.remove(span)
            if self.lateness:
                gone = (ts + 1 - self.lateness - size, ts + 1 - self.lateness)
                if state.contains(gone):
                    state.remove(gone)
            return
        spans = self.state.keys()  # a list: the loop may remove some
        for span in spans:
            window = TimeWindow(span[0], span[1])
            end = window.end - 1
            if end == ts:
                self._emit(key, window, self.state.get(span))
            if end + self.lateness == ts:
                self.state.remove(span)

    def flush(self) -> None:
        """Writes what the core holds outside the backend's states; the operator calls it before every snapshot.

        Nothing here (every change goes to the states at once); the RocksDB fast path caches accumulators.
        """

    def stamp_results_with_window_end(self) -> None:
        """Each result is ``(window.max_timestamp(), result)`` from now on (event time after a window, as Flink)."""
        self.out = StampingCollector()
        self.stamp_results = True

    def _emit(self, key: Any, window: TimeWindow, acc: Any) -> None:
        if self.stamp_results:
            self.out.ts = window.end - 1
        result = self.aggregation.result(acc)
        if self.window_function is None:
            self.out.collect(result)
            return
        elements = result if self.aggregation.buffers_records else [result]
        context = WindowContext(window, self.now(), self.watermark if self.event_time else None, self.side_outputs)
        self.window_function.process(key, context, elements, self.out)

    def take(self) -> tuple[list[Any], list[Any]]:
        """The window results and the late records produced since the last call."""
        late, self.late = self.late, []
        return self.out.reset(), late


__all__ = ["WindowAggregation", "WindowCore"]
