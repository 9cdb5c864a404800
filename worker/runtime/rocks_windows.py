"""The window operator's RocksDB fast path: tumbling and sliding windows with ``aggregate``/``reduce``.

Same semantics and state as ``WindowCore`` (``runtime/event_windows.py``): a key's windows are
its rows ``(start, end) -> accumulator`` of the ``__windows__`` map state and a window's end is a
keyed timer, so checkpoints, restores and rescaling by key group are unchanged (a job can move
between this path, the general one and the hashmap backend). What differs is how a batch reaches
the database (``state/direct_rows.py``): each record's rows are built from a key's cached prefix
and a window's cached bytes, without setting the current key; the batch's rows are read in one
multi-get, each accumulator is decoded once, updated by every record of the batch in record order,
and encoded and written once, in one write batch at the end of the batch. Timers are registered by
``(timestamp, key)`` directly; due windows are read in one multi-get, emitted, and deleted.

Used for the assigners the hashmap fast path takes (``direct_windows.py``), an accumulator per
window and a RocksDB backend (no time-to-live). Callers: ``direct_windows.direct_window_core``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rocksdict import WriteBatch

from streamjob.worker.api.windows import ProcessWindowFunction, TimeWindow, WindowAssigner
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.direct_rows import DirectRows

_MISSING = object()
_SPAN_CACHE_LIMIT = 1024


class RocksWindowCore(WindowCore):
    """``WindowCore`` with batched row access on RocksDB (see the module docstring)."""

    def __init__(
        self,
        backend: KeyedStateBackend,
        assigner: WindowAssigner,
        aggregation: WindowAggregation,
        window_function: ProcessWindowFunction[Any, Any, Any] | None,
        rows: DirectRows,
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
        self.rows = rows
        self._register_for = backend.timer_registrar(event_time=assigner.is_event_time)
        self._size: int = assigner.size_ms
        self._slide: int = getattr(assigner, "slide_ms", assigner.size_ms)
        self._offset: int = getattr(assigner, "offset_ms", 0)
        self._span_bytes: dict[int, bytes] = {}

    def _span(self, start: int) -> bytes:
        """The stored bytes of the window starting at ``start`` (cached per start)."""
        cache = self._span_bytes
        found = cache.get(start)
        if found is None:
            if len(cache) >= _SPAN_CACHE_LIMIT:
                cache.clear()
            found = cache[start] = self.rows.user_key((start, start + self._size))
        return found

    def process_batch(
        self, batch: list[Any], select: Callable[[Any], Any], timestamp_of: Callable[[Any], int] | None, now: int
    ) -> None:
        """Adds a batch of records (see ``WindowCore.process_batch`` and the module docstring)."""
        rows = self.rows
        prefix_of, span_of, mark = rows.prefix, self._span, rows.mark
        size, slide, offset = self._size, self._slide, self._offset
        wm, lateness, event_time = self.watermark, self.lateness, self.event_time
        late = self.late
        # Pass 1: each record's (key, start, row) for the windows it goes into, in record order.
        todo: list[tuple[Any, Any, int, bytes]] = []
        wanted: dict[bytes, Any] = {}
        for r in batch:
            ts = now if timestamp_of is None else timestamp_of(r)
            key = select(r)
            skipped = True
            prefix = b""
            for start in range(ts - (ts - offset) % slide, ts - size, -slide):
                if event_time and start + size - 1 + lateness <= wm:
                    continue
                if skipped:
                    skipped = False
                    prefix = prefix_of(key)
                row = prefix + span_of(start)
                todo.append((r, key, start, row))
                wanted[row] = _MISSING
            if skipped and event_time and ts + lateness <= wm:
                late.append(r)
        if not todo:
            return
        # Pass 2: one read per distinct row, the records added in order, one write per row.
        keys = list(wanted)
        decode = rows.decode
        for row, raw in zip(keys, rows.db.get(keys), strict=True):
            if raw is not None:
                wanted[row] = decode(raw)
        create, add = self.aggregation.create, self.aggregation.add
        register = self._register_for
        for r, key, start, row in todo:
            acc = wanted[row]
            end = start + size - 1
            if acc is _MISSING:
                acc = wanted[row] = add(r, create())
                if event_time and end <= wm:
                    self._late_firing(key, start, acc)
                else:
                    register(end, key)
                if lateness:
                    register(end + lateness, key)
            else:
                acc = wanted[row] = add(r, acc)
                if event_time and end <= wm:
                    self._late_firing(key, start, acc)
        write = WriteBatch(raw_mode=True)
        put, encode = write.put, rows.encode
        for row, acc in wanted.items():
            put(row, encode(acc))
        rows.db.write(write)
        if mark is not None:
            for _, key, _, _ in todo:
                mark(key)

    def _late_firing(self, key: Any, start: int, acc: Any) -> None:
        """A record added to a window the watermark passed (within the allowed lateness) fires it again."""
        self.backend.set_current_key(key)
        self._emit(key, TimeWindow(start, start + self._size), acc)

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
        rows = self.rows
        prefix_of, span_of, mark, decode = rows.prefix, self._span, rows.mark, rows.decode
        size, lateness = self._size, self.lateness
        keys = [prefix_of(key) + span_of(ts + 1 - size) for ts, key in due]
        raws = rows.db.get(keys)
        result = self.aggregation.result
        direct = self.window_function is None
        stamped = direct and self.stamp_results  # results are (window.max_timestamp(), result) pairs
        emitted: list[Any] = self.out.out if stamped else []
        collect = self.out.collect
        write = WriteBatch(raw_mode=True)
        delete = write.delete
        set_key = self.backend.set_current_key
        for (ts, key), row, raw in zip(due, keys, raws, strict=True):
            if raw is not None:
                acc = decode(raw)
                if stamped:
                    emitted.append((ts, result(acc)))  # the window's max timestamp, as _emit stamps it
                elif direct:
                    collect(result(acc))
                else:
                    set_key(key)
                    self._emit(key, TimeWindow(ts + 1 - size, ts + 1), acc)
                if not lateness:
                    delete(row)
            if lateness:
                delete(prefix_of(key) + span_of(ts + 1 - lateness - size))
            if mark is not None:
                mark(key)
        rows.db.write(write)


__all__ = ["RocksWindowCore"]
