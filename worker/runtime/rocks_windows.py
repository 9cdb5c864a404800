"""The window operator's RocksDB fast path: tumbling and sliding windows with ``aggregate``/``reduce``.

Same semantics and state as ``WindowCore`` (``runtime/event_windows.py``): a key's windows are
its rows ``(start, end) -> accumulator`` of the ``__windows__`` map state and a window's end is a
keyed timer, so checkpoints, restores and rescaling by key group are unchanged (a job can move
between this path, the general one and the hashmap backend). What differs is how a batch reaches
the database (``state/direct_rows.py``): each record's rows are built from a key's cached prefix
and a window's cached bytes, without setting the current key. Accumulators live in a bounded
write-back cache (row -> accumulator): a batch reads the rows it does not hold in one multi-get
and updates them in record order; the changed ones are encoded and written in one write batch by
``flush``, which the operator calls before every snapshot (``before_snapshot``, so each snapshot
has every accumulator) and which runs when the cache is full. A crash loses only the cache, which
the restore from the last snapshot replaces anyway. Timers are registered by ``(timestamp, key)``
directly; a due window's accumulator is the cached one or read (one multi-get per firing), and
its row is deleted.

Used for the assigners the hashmap fast path takes (``direct_windows.py``), an accumulator per
window and a RocksDB backend (no time-to-live). Callers: ``direct_windows.direct_window_core``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.api.windows import ProcessWindowFunction, TimeWindow, WindowAssigner
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.direct_rows import DirectRows

_MISSING = object()
_SPAN_CACHE_LIMIT = 1024
_CACHE_LIMIT = 1 << 18
"""Accumulators kept between batches (flushed and dropped beyond): 10 s / 1 s windows of 10k keys fit."""


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
        self._cache: dict[bytes, Any] = {}  # row -> accumulator, authoritative over the database's
        self._dirty: set[bytes] = set()  # the cached rows changed since the last flush

    def _span(self, start: int) -> bytes:
        """The stored bytes of the window starting at ``start`` (cached per start)."""
        cache = self._span_bytes
        found = cache.get(start)
        if found is None:
            if len(cache) >= _SPAN_CACHE_LIMIT:
                cache.clear()
            found = cache[start] = self.rows.user_key((start, start + self._size))
        return found

    def process(self, key: Any, value: Any, timestamp_ms: int) -> None:
        """Adds one record of ``key`` (through the batch path: the accumulators may be in the write-back cache)."""
        self.process_batch([value], lambda _: key, lambda _: timestamp_ms, timestamp_ms)

    def process_batch(
        self, batch: list[Any], select: Callable[[Any], Any], timestamp_of: Callable[[Any], int] | None, now: int
    ) -> None:
        """Adds a batch of records (see ``WindowCore.process_batch`` and the module docstring)."""
        rows = self.rows
        prefix_of, span_of, mark = rows.prefix, self._span, rows.mark
        size, slide, offset = self._size, self._slide, self._offset
        wm, lateness, event_time = self.watermark, self.lateness, self.event_time
        late, cache = self.late, self._cache
        # Pass 1: each record's (key, start, row) for the windows it goes into, in record order.
        todo: list[tuple[Any, Any, int, bytes]] = []
        wanted: dict[bytes, Any] = {}
        cached = cache.get
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
                if row not in wanted:
                    wanted[row] = cached(row, _MISSING)
            if skipped and event_time and ts + lateness <= wm:
                late.append(r)
        if not todo:
            return
        # Pass 2: the rows not cached read in one multi-get, the records added in order.
        missing = [row for row, acc in wanted.items() if acc is _MISSING]
        if missing:
            decode = rows.decode
            for row, raw in zip(missing, rows.get_many(missing), strict=True):
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
        if len(cache) + len(wanted) > _CACHE_LIMIT:
            self.flush()
            cache.clear()
        cache.update(wanted)
        self._dirty.update(wanted)
        if mark is not None:
            for _, key, _, _ in todo:
                mark(key)

    def flush(self) -> None:
        """Writes the accumulators changed since the last flush (in one write batch); called before every snapshot."""
        dirty = self._dirty
        if not dirty:
            return
        cache, encode = self._cache, self.rows.encode
        from rocksdict import WriteBatch  # here: a slot of a hashmap job never loads rocksdict

        write = WriteBatch(raw_mode=True)
        put = write.put
        for row in dirty:
            put(row, encode(cache[row]))
        self.rows.db.write(write)
        dirty.clear()

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
        """Emits the window ending at each timer's time (and drops the one whose lateness ended).

        A window's accumulator is the cached one, else the stored one (the uncached read in one multi-get).
        """
        if not due:
            return
        rows, cache, dirty = self.rows, self._cache, self._dirty
        prefix_of, span_of, mark, decode = rows.prefix, self._span, rows.mark, rows.decode
        size, lateness = self._size, self.lateness
        keys = [prefix_of(key) + span_of(ts + 1 - size) for ts, key in due]
        accs = [cache.get(row, _MISSING) for row in keys]
        missing = [i for i, acc in enumerate(accs) if acc is _MISSING]
        if missing:
            raws = rows.get_many([keys[i] for i in missing])
            for i, raw in zip(missing, raws, strict=True):
                if raw is not None:
                    accs[i] = decode(raw)
        result = self.aggregation.result
        direct = self.window_function is None
        stamped = direct and self.stamp_results  # results are (window.max_timestamp(), result) pairs
        emitted: list[Any] = self.out.out if stamped else []
        collect = self.out.collect
        from rocksdict import WriteBatch  # here: a slot of a hashmap job never loads rocksdict

        write = WriteBatch(raw_mode=True)
        delete = write.delete
        set_key = self.backend.set_current_key
        for (ts, key), row, acc in zip(due, keys, accs, strict=True):
            if acc is not _MISSING:
                if stamped:
                    emitted.append((ts, result(acc)))  # the window's max timestamp, as _emit stamps it
                elif direct:
                    collect(result(acc))
                else:
                    set_key(key)
                    self._emit(key, TimeWindow(ts + 1 - size, ts + 1), acc)
                if not lateness:
                    cache.pop(row, None)
                    dirty.discard(row)
                    delete(row)
            if lateness:
                gone = prefix_of(key) + span_of(ts + 1 - lateness - size)
                cache.pop(gone, None)
                dirty.discard(gone)
                delete(gone)
            if mark is not None:
                mark(key)
        rows.db.write(write)


__all__ = ["RocksWindowCore"]
