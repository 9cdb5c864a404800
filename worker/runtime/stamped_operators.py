"""Operators that keep each record's event timestamp through ``map``, ``flat_map``, ``filter`` and ``process``.

As in Flink, a one-input operator's outputs carry the timestamp of the record they came from. On a
stream with event time (after ``assign_timestamps_and_watermarks``) these operators emit
``(timestamp, value)`` pairs: the first one of a run reads the timestamp with the strategy's
assigner, the next ones take it from the pair. ``key_by`` then keys by the value, windows and process
functions read the pair's timestamp, and the first operation that does not use it (a sink, a reduce, a
union, another helper's operator) gets the plain values through an ``Unstamp`` operator the API
inserts (``api/stamped.py``). Jobs without event time never run these operators.
Callers: ``operators.create_operator`` (transformations with the ``stamp`` option).
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.runtime.context import ProcessContextImpl, StampingCollector, TimeDomain
from streamjob.worker.runtime.operators import StreamOperator


class _Stamped(StreamOperator):
    """Shared setup: how the input's timestamps are read, and the key selector of keyed inputs."""

    def open(self) -> None:
        super().open()
        options = self.setup.transformation.options
        self._stamped_in = bool(options.get("stamped_in"))
        strategy = options.get("timestamps")
        self._timestamp_of = None if strategy is None else strategy.record_timestamp_function()
        self._select = self.setup.transformation.key_selector

    def _pairs(self, batch: list[Any]) -> list[Any]:
        """The input as ``(ts, value)`` pairs."""
        if self._stamped_in:
            return batch
        timestamp_of = self._timestamp_of
        assert timestamp_of is not None
        return [(timestamp_of(r), r) for r in batch]

    def _set_key(self, record: Any) -> None:
        assert self.backend is not None
        self.backend.set_current_key(self._select(record))


class StampedMapOperator(_Stamped):
    """``map`` keeping timestamps."""

    def open(self) -> None:
        super().open()
        fn = self.fn
        self._f = fn.map if hasattr(fn, "map") else fn

    def process_batch(self, batch: list[Any]) -> list[Any]:
        f = self._f
        if self.backend is None:
            if self._stamped_in:
                return [(ts, f(v)) for ts, v in batch]
            timestamp_of = self._timestamp_of
            assert timestamp_of is not None
            return [(timestamp_of(r), f(r)) for r in batch]
        out = []
        for raw, (ts, v) in zip(batch, self._pairs(batch), strict=True):
            self._set_key(raw)
            out.append((ts, f(v)))
        return out


class StampedFilterOperator(_Stamped):
    """``filter`` of ``(ts, value)`` pairs."""

    def open(self) -> None:
        super().open()
        self._f = self.fn.filter if hasattr(self.fn, "filter") else self.fn

    def process_batch(self, batch: list[Any]) -> list[Any]:
        f = self._f
        if self.backend is None:
            return [r for r in batch if f(r[1])]
        out = []
        for r in batch:
            self._set_key(r)
            if f(r[1]):
                out.append(r)
        return out


class StampedFlatMapOperator(_Stamped):
    """``flat_map`` whose outputs carry the input record's timestamp."""

    def open(self) -> None:
        super().open()
        self._collector = StampingCollector()

    def process_batch(self, batch: list[Any]) -> list[Any]:
        fn, collector = self.fn, self._collector
        method = getattr(fn, "flat_map", None)
        keyed = self.backend is not None
        for raw, (ts, v) in zip(batch, self._pairs(batch), strict=True):
            if keyed:
                self._set_key(raw)
            collector.ts = ts
            result = method(v, collector) if method is not None else fn(v)
            if result is not None:
                for item in result:
                    collector.collect(item)
        return collector.reset()


class StampedProcessOperator(_Stamped):
    """``process``: ``ctx.timestamp()`` is the record's, outputs carry it (timers' outputs their time)."""

    def open(self) -> None:
        super().open()
        self._ctx = ProcessContextImpl(self.backend, self.side_outputs)
        self._collector = StampingCollector()

    def process_batch(self, batch: list[Any]) -> list[Any]:
        process = self.fn.process_element
        ctx, collector = self._ctx, self._collector
        keyed = self.backend is not None
        for raw, (ts, v) in zip(batch, self._pairs(batch), strict=True):
            if keyed:
                self._set_key(raw)
            ctx.fired_at = collector.ts = ts
            process(v, ctx, collector)
        ctx.fired_at = None
        return collector.reset()

    def fire_timers(self, now: int) -> list[Any]:
        if self.backend is None:
            return []
        due = self.backend.pop_due_timers(now)
        return self._on_timers(due, TimeDomain.PROCESSING_TIME) if due else []

    def on_watermark(self, watermark: int) -> tuple[int, list[Any]]:
        self._ctx.watermark = watermark
        if self.backend is None:
            return watermark, []
        due = self.backend.pop_due_event_timers(watermark)
        return watermark, self._on_timers(due, TimeDomain.EVENT_TIME) if due else []

    def _on_timers(self, due: list[tuple[int, Any]], domain: TimeDomain) -> list[Any]:
        assert self.backend is not None
        ctx, collector = self._ctx, self._collector
        ctx.domain = domain
        for ts, key in due:
            self.backend.set_current_key(key)
            ctx.fired_at = collector.ts = ts
            self.fn.on_timer(ts, ctx, collector)
        ctx.fired_at = None
        ctx.domain = None
        return collector.reset()


class UnstampOperator(StreamOperator):
    """The values of ``(ts, value)`` pairs, for operators that do not read timestamps."""

    def process_batch(self, batch: list[Any]) -> list[Any]:
        return [v for _, v in batch]


_STAMPED: dict[str, type[StreamOperator]] = {
    "map": StampedMapOperator,
    "filter": StampedFilterOperator,
    "flat_map": StampedFlatMapOperator,
    "process": StampedProcessOperator,
    "unstamp": UnstampOperator,
}


def create_stamped_operator(setup: Any) -> StreamOperator:
    """The operator of a transformation with the ``stamp`` option (its value names the operation)."""
    return _STAMPED[setup.transformation.options["stamp"]](setup)


__all__ = ["UnstampOperator", "create_stamped_operator"]
