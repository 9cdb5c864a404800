"""Operators of two inputs: the input tag, co-map/co-flat-map/co-process, and the dispatch to the others.

A two-input operator heads a task whose input channels carry both inputs; every record arrives
tagged ``(side, value)`` by a ``TagOperator`` chained to its input's last operator
(``api/connected.py``), so the operator needs no channel bookkeeping, and in-flight records of an
unaligned checkpoint replay to the right input. Keyed variants set the current key with the
transformation's ``SideKey`` (each input's own selector); keyed state and timers are the backend's,
shared by both inputs. Each input's event timestamps come from its own ``WatermarkStrategy``.

Callers: ``two_input.create_two_input_operator``; broadcast state and interval joins live in
``broadcast_operators.py`` and ``join_operators.py``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.runtime.context import ListCollector, ProcessContextImpl
from streamjob.worker.runtime.operators import ProcessOperator, StreamOperator


class TagOperator(StreamOperator):
    """``r -> (side, r)``: which input of the two-input operator downstream a record belongs to."""

    def open(self) -> None:
        super().open()
        self._side = self.setup.transformation.options["side"]

    def process_batch(self, batch: list[Any]) -> list[Any]:
        side = self._side
        return [(side, r) for r in batch]


def side_timestamps(options: dict[str, Any]) -> tuple[Any, Any]:
    """Each input's record -> event timestamp function (None for an input without timestamps)."""
    strategies = options.get("timestamps") or (None, None)
    return tuple(None if s is None else s.record_timestamp_function() for s in strategies)  # type: ignore[return-value]


class CoProcessOperator(ProcessOperator):
    """``connect(...).map/flat_map/process``; timers and watermarks as ``ProcessOperator``'s."""

    def open(self) -> None:
        StreamOperator.open(self)
        t = self.setup.transformation
        fn = self.fn
        self._ctx = ProcessContextImpl(self.backend)
        self._collector = ListCollector()
        self._timestamps = side_timestamps(t.options)
        kind = t.options["co_kind"]
        if kind == "map":
            self._functions = (fn.map1, fn.map2)
            self._run = self._map
        elif kind == "flat_map":
            self._functions = (fn.flat_map1, fn.flat_map2)
            self._run = self._flat_map
        else:
            self._functions = (fn.process_element1, fn.process_element2)
            self._run = self._process

    def process_batch(self, batch: list[Any]) -> list[Any]:
        return self._run(batch)

    def _map(self, batch: list[Any]) -> list[Any]:
        functions = self._functions
        if self.backend is None:
            return [functions[side](value) for side, value in batch]
        set_key, select = self.backend.set_current_key, self.setup.transformation.key_selector
        out = []
        for record in batch:
            set_key(select(record))
            out.append(functions[record[0]](record[1]))
        return out

    def _flat_map(self, batch: list[Any]) -> list[Any]:
        functions, collector = self._functions, self._collector
        backend, select = self.backend, self.setup.transformation.key_selector
        for record in batch:
            if backend is not None:
                backend.set_current_key(select(record))
            result = functions[record[0]](record[1], collector)
            if result is not None:
                collector.out.extend(result)
        return collector.reset()

    def _process(self, batch: list[Any]) -> list[Any]:
        functions, timestamps = self._functions, self._timestamps
        ctx, collector = self._ctx, self._collector
        set_key = None if self.backend is None else self.backend.set_current_key
        select = self.setup.transformation.key_selector
        for record in batch:
            side, value = record
            if set_key is not None:
                set_key(select(record))
            timestamp_of = timestamps[side]
            ctx.fired_at = None if timestamp_of is None else timestamp_of(value)
            functions[side](value, ctx, collector)
        ctx.fired_at = None
        return collector.reset()


__all__ = ["CoProcessOperator", "TagOperator", "side_timestamps"]
