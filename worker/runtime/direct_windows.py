"""The window operator's fast path: tumbling and sliding windows with ``aggregate``/``reduce`` on the hashmap backend.

Same semantics and state as ``WindowCore`` (``runtime/event_windows.py``): the windows of a key are
its entries ``(start, end) -> accumulator`` in the ``__windows__`` map state and a window's end is
a keyed timer, so checkpoints, restores and rescaling by key group are unchanged (a job can
move between this path and the general one). What differs is how a record reaches its
accumulator: through the map state's table (``state/direct_map.py``), one dict lookup for the key
and one for the window, with the window computed inline, instead of setting the current key and
calling the map state's methods (each a Python frame checking the current key and the snapshot
sharing) and building a list of windows per record. Accumulators are changed in place: a snapshot
copies this table in its synchronous part instead of copying keys on write. Timers are registered
by ``(timestamp, key)`` directly, and a due window is emitted and dropped with dict operations.

Used only for the assigners whose windows are computed here (the four built-in tumbling and
sliding assigners, not subclasses), an accumulator per window (not ``process`` alone) and a
backend with a direct table (hashmap, no time-to-live). Callers: ``time_operators.EventWindowOperator``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.api.windows import (
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.runtime.rocks_windows import RocksWindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.direct_map import DirectMap

_FIXED = (
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
)
_MISSING = object()


class DirectWindowCore(WindowCore):
    """``WindowCore`` with the per-record and firing paths on the map state's table (see the module docstring)."""

    def __init__(
        self,
        backend: KeyedStateBackend,
        assigner: WindowAssigner,
        aggregation: WindowAggregation,
        window_function: ProcessWindowFunction[Any, Any, Any] | None,
        table: DirectMap,
        *,
        allowed_lateness_ms: int = 0,
        descriptor: MapStateDescriptor[Any, Any],
        now: Callable[[], int],
    ) -> None:
        super().__init__(
            backend,
            assigner,
            aggregation,
            window_function,
            allowed_lateness_ms=allowed_lateness_ms,
            descriptor=descriptor,
            now=now,
        )
        self.table = table
        self._register_for = backend.timer_registrar(event_time=assigner.is_event_time)
        self._size = assigner.size_ms
        self._slide: int = getattr(assigner, "slide_ms", assigner.size_ms)
        self._offset: int = getattr(assigner, "offset_ms", 0)
        self._spans: dict[int, tuple[int, int]] = {}

    def process_batch(
        self, batch: list[Any], select: Callable[[Any], Any], timestamp_of: Callable[[Any], int] | None, now: int
    ) -> None:
        """Adds a batch of records (see ``WindowCore.process_batch``)."""
        if self._slide == self._size:
            self._add_tumbling(batch, select, timestamp_of, now)
        else:
            self._add_sliding(batch, select, timestamp_of, now)

    def _add_tumbling(
        self,
        batch: list[Any],
        select: Callable[[Any], Any],
        timestamp_of: Callable[[Any], int] | None,
        now: int,
    ) -> None:
        """One window per record, computed inline; records whose window follows the previous one's share its span."""
        data, mark = self.table.data, self.table.mark
        windows_of = data.get
        create, add = self.aggregation.create, self.aggregation.add
        register = self._register_for
        size, offset = self._size, self._offset
        wm, lateness, event_time = self.watermark, self.lateness, self.event_time
        late = self.late
        start, span = None, (0, 0)
        spans = self._spans  # one tuple object per window start: a lookup matches the stored key by identity
        if len(spans) > 256:
            spans.clear()
        for r in batch:
            ts = now if timestamp_of is None else timestamp_of(r)
            key = select(r)
            last = ts - (ts - offset) % size
            end = last + size - 1
            if event_time and end + lateness <= wm:
                if ts + lateness <= wm:
                    late.append(r)
                continue
            windows = windows_of(key)
            if windows is None:
                windows = data[key] = {}
            if last != start:  # the records of a batch fall in a few windows: their spans are shared objects
                start = last
                span = spans.get(last) or spans.setdefault(last, (last, last + size))
            acc = windows.get(span, _MISSING)
            if acc is _MISSING:
                windows[span] = add(r, create())
                if event_time and end <= wm:
                    self._late_firing(key, TimeWindow(last, last + size), windows[span])
                else:
                    register(end, key)
                if lateness:
                    register(end + lateness, key)
            else:
                windows[span] = add(r, acc)
                if event_time and end <= wm:
                    self._late_firing(key, TimeWindow(last, last + size), windows[span])
            if mark is not None:
                mark(key)

    def _add_sliding(
        self,
        batch: list[Any],
        select: Callable[[Any], Any],
        timestamp_of: Callable[[Any], int] | None,
        now: int,
    ) -> None:
        """``size / slide`` windows per record, latest start first (as the assigner lists them)."""
        data, mark = self.table.data, self.table.mark
        windows_of = data.get
        create, add = self.aggregation.create, self.aggregation.add
        register = self._register_for
        size, slide, offset = self._size, self._slide, self._offset
        wm, lateness, event_time = self.watermark, self.lateness, self.event_time
        late = self.late
        for r in batch:
            ts = now if timestamp_of is None else timestamp_of(r)
            key = select(r)
            windows = None
            for start in range(ts - (ts - offset) % slide, ts - size, -slide):
                end = start + size - 1
                if event_time and end + lateness <= wm:
                    continue
                if windows is None:
                    windows = windows_of(key)
                    if windows is None:
                        windows = data[key] = {}
                    if mark is not None:
                        mark(key)
                span = (start, start + size)
                acc = windows.get(span, _MISSING)
                new = acc is _MISSING
                windows[span] = add(r, create() if new else acc)
                if event_time and end <= wm:
                    self._late_firing(key, TimeWindow(start, start + size), windows[span])
                elif new:
                    register(end, key)
                if lateness and new:
                    register(end + lateness, key)
            if windows is None and event_time and ts + lateness <= wm:
                late.append(r)

    def _late_firing(self, key: Any, window: TimeWindow, acc: Any) -> None:
        """A record added to a window the watermark passed (within the allowed lateness) fires it again."""
        self.backend.set_current_key(key)
        self._emit(key, window, acc)

    def advance_watermark(self, watermark: int) -> None:
        """Fires the windows the watermark reached and drops those past their lateness."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        self._fire(self.backend.pop_due_event_timers(watermark))

    def fire_processing_time(self, now_ms: int) -> None:
        """Fires the processing-time windows whose end passed."""
        self._fire(self.backend.pop_due_timers(now_ms))

    def _fire(self, due: list[tuple[int, Any]]) -> None:
        """Emits the window ending at each timer's time (and drops the one whose lateness ended)."""
        if not due:
            return
        data, mark = self.table.data, self.table.mark
        size, lateness = self._size, self.lateness
        result, collect = self.aggregation.result, self.out.collect
        direct = self.window_function is None
        stamped = direct and self.stamp_results  # results are (window.max_timestamp(), result) pairs
        emitted: list[Any] = self.out.out if stamped else []
        set_key = self.backend.set_current_key
        for ts, key in due:
            windows = data.get(key)
            if windows is None:
                continue
            span = (ts + 1 - size, ts + 1)
            acc = windows.get(span, _MISSING)
            if acc is not _MISSING:
                if stamped:
                    emitted.append((ts, result(acc)))  # the window's max timestamp, as _emit stamps it
                elif direct:
                    collect(result(acc))
                else:
                    set_key(key)
                    self._emit(key, TimeWindow(span[0], span[1]), acc)
                if not lateness:
                    del windows[span]
            if lateness:
                windows.pop((span[0] - lateness, span[1] - lateness), None)
            if not windows:
                del data[key]
            if mark is not None:
                mark(key)


def direct_window_core(
    backend: KeyedStateBackend,
    assigner: WindowAssigner,
    aggregation: WindowAggregation,
    window_function: ProcessWindowFunction[Any, Any, Any] | None,
    *,
    allowed_lateness_ms: int,
    descriptor: MapStateDescriptor[Any, Any],
    now: Callable[[], int],
) -> WindowCore:
    """The window core for these windows: a fast path when one applies, else ``WindowCore``.

    This module's on the hashmap backend, ``rocks_windows.py``'s on RocksDB (module docstrings).
    """
    table = rows = None
    if type(assigner) in _FIXED and not aggregation.buffers_records:
        table = backend.direct_map(descriptor)
        rows = None if table is not None else backend.direct_rows(descriptor)
    if rows is not None:
        return RocksWindowCore(
            backend,
            assigner,
            aggregation,
            window_function,
            rows,
            allowed_lateness_ms=allowed_lateness_ms,
            descriptor=descriptor,
            now=now,
        )
    if table is None:
        return WindowCore(
            backend,
            assigner,
            aggregation,
            window_function,
            allowed_lateness_ms=allowed_lateness_ms,
            descriptor=descriptor,
            now=now,
        )
    return DirectWindowCore(
        backend,
        assigner,
        aggregation,
        window_function,
        table,
        allowed_lateness_ms=allowed_lateness_ms,
        descriptor=descriptor,
        now=now,
    )


__all__ = ["DirectWindowCore", "direct_window_core"]
