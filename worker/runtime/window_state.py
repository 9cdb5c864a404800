"""How a window operator stores each key's windows: one accumulator per window, or the window's records.

``WindowCore`` (``runtime/event_windows.py``) keeps its windows in one of two stores, both made of
ordinary map states of the keyed backend (so they are in every checkpoint, rescale by key group and
move between the hashmap and RocksDB backends):

- ``AccumulatingWindows`` (``aggregate`` / ``reduce``): span -> accumulator in one map state. Its
  ``get``/``put``/... are the map state's own bound methods, so the per-record path calls nothing more.
- ``BufferedWindows`` (``process`` without pre-aggregation): the records of a window are never
  rewritten as a whole. Each record is one entry ``(ns_start, ns_end, i) -> record`` of an elements
  map state and the window's entry in the windows map state is ``(lo, hi, ns_start, ns_end)``: its
  records are ``i`` in ``[lo, hi)`` of namespace ``ns``. Adding a record is one read and two writes
  (on RocksDB: three point operations, whatever the window holds; before, the whole list was read,
  decoded, re-encoded and written per record: 5,000 records of one key took 33.8 s). The records are
  read once, when the window fires. Merging session windows keeps the largest member's namespace
  (Flink's ``MergingWindowSet`` "state window") and moves the smaller members' records before or
  after it, so a session that grows by one record moves nothing.

A windows entry holding a list is the layout before this one (the window's records as one value):
it is read as such and converted on its first write, so savepoints taken before still restore.

Callers: ``WindowCore``; unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.primitives import MapState

Span = tuple[int, int]
_EMPTY = object()


class AccumulatingWindows:
    """span -> accumulator in one map state (``aggregate`` / ``reduce``)."""

    buffers_records = False

    def __init__(self, state: MapState[Any, Any], merge: Callable[[Any, Any], Any]) -> None:
        self.state = state
        self.get: Callable[[Span], Any] = state.get
        self.put: Callable[[Span, Any], None] = state.put
        self.contains: Callable[[Span], bool] = state.contains
        self.remove: Callable[[Span], None] = state.remove
        self.keys: Callable[[], list[Any]] = state.keys
        self.items: Callable[[], list[tuple[Any, Any]]] = state.items
        self._merge = merge

    def merge_into(self, target: Span, members: list[Span]) -> None:
        """Merges the accumulators of ``members`` (in order) into ``target``'s; the members are removed."""
        acc: Any = _EMPTY
        for span in members:
            part = self.get(span)
            self.remove(span)
            acc = part if acc is _EMPTY else self._merge(acc, part)
        if acc is not _EMPTY:
            self.put(target, acc)


class BufferedWindows:
    """The records of each window, one state entry per record (see the module docstring)."""

    buffers_records = True

    def __init__(self, backend: KeyedStateBackend, descriptor: MapStateDescriptor[Any, Any]) -> None:
        self._windows: MapState[Any, Any] = backend.get_state(descriptor)
        elements = MapStateDescriptor[Any, Any](f"{descriptor.name}.elements", serializer=descriptor.serializer)
        self._elements: MapState[Any, Any] = backend.get_state(elements)
        self.contains: Callable[[Span], bool] = self._windows.contains
        self.keys: Callable[[], list[Any]] = self._windows.keys

    def _layout(self, span: Span, meta: Any) -> tuple[int, int, int, int] | None:
        """``meta`` as ``(lo, hi, ns_start, ns_end)``, or None when it is a window stored as one list.

        A serializer that returns tuples as lists (a custom one) still gives ``[lo, hi, start, end]``:
        that is this layout when the window's first entry exists.
        """
        if type(meta) is tuple:
            return meta  # type: ignore[return-value]
        if (
            len(meta) == 4
            and all(type(x) is int for x in meta)
            and self._elements.contains((meta[2], meta[3], meta[0]))
        ):
            return (meta[0], meta[1], meta[2], meta[3])
        return None

    def append(self, span: Span, value: Any) -> bool:
        """Adds ``value`` to the window ``span`` of the current key; True when the window is new."""
        windows = self._windows
        meta = windows.get(span)
        if meta is None:
            self._elements.put((span[0], span[1], 0), value)
            windows.put(span, (0, 1, span[0], span[1]))
            return True
        if type(meta) is not tuple:
            meta = self._layout(span, meta) or self._convert(span, meta)
        lo, hi, start, end = meta
        self._elements.put((start, end, hi), value)
        windows.put(span, (lo, hi + 1, start, end))
        return False

    def get(self, span: Span) -> list[Any] | None:
        """The window's records in the order they were added, or None when it holds none."""
        meta = self._windows.get(span)
        if meta is None:
            return None
        layout = self._layout(span, meta)
        if layout is None:
            return list(meta)
        lo, hi, start, end = layout
        get = self._elements.get
        return [get((start, end, i)) for i in range(lo, hi)]

    def items(self) -> list[tuple[Span, list[Any]]]:
        """Every window of the current key with its records."""
        return [(span, self.get(span) or []) for span in self.keys()]

    def put(self, span: Span, values: list[Any]) -> None:
        """Replaces the window's records (an empty list removes the window)."""
        self.remove(span)
        if not values:
            return
        put = self._elements.put
        for i, value in enumerate(values):
            put((span[0], span[1], i), value)
        self._windows.put(span, (0, len(values), span[0], span[1]))

    def remove(self, span: Span) -> None:
        """Drops the window and its records."""
        meta = self._windows.get(span)
        if meta is None:
            return
        self._windows.remove(span)
        layout = self._layout(span, meta)
        if layout is not None:
            lo, hi, start, end = layout
            remove = self._elements.remove
            for i in range(lo, hi):
                remove((start, end, i))

    def merge_into(self, target: Span, members: list[Span]) -> None:
        """Makes ``target`` hold the records of ``members`` (in their order); the members are removed.

        The largest member keeps its records where they are; the others' are moved in front of
        it (members before it) or after it, so the work is the size of the smaller members.
        """
        present: list[tuple[Span, tuple[int, int, int, int]]] = []
        for span in members:
            meta = self._windows.get(span)
            if meta is not None:
                present.append((span, self._layout(span, meta) or self._convert(span, meta)))
        if not present:
            return
        keep = max(range(len(present)), key=lambda i: present[i][1][1] - present[i][1][0])
        lo, hi, start, end = present[keep][1]
        put = self._elements.put
        for span, _ in reversed(present[:keep]):
            for value in reversed(self.get(span) or []):
                lo -= 1
                put((start, end, lo), value)
            self.remove(span)
        for span, _ in present[keep + 1 :]:
            for value in self.get(span) or []:
                put((start, end, hi), value)
                hi += 1
            self.remove(span)
        self._windows.remove(present[keep][0])
        self._windows.put(target, (lo, hi, start, end))

    def _convert(self, span: Span, records: list[Any]) -> tuple[int, int, int, int]:
        """A window stored as one list (the earlier layout) rewritten as one entry per record."""
        put = self._elements.put
        for i, value in enumerate(records):
            put((span[0], span[1], i), value)
        meta = (0, len(records), span[0], span[1])
        self._windows.put(span, meta)
        return meta


WindowState = AccumulatingWindows | BufferedWindows


def window_state(
    backend: KeyedStateBackend,
    descriptor: MapStateDescriptor[Any, Any],
    *,
    buffers_records: bool,
    merge: Callable[[Any, Any], Any],
) -> WindowState:
    """The store of a window operator: the records (``process`` alone) or one accumulator per window."""
    if buffers_records:
        return BufferedWindows(backend, descriptor)
    return AccumulatingWindows(backend.get_state(descriptor), merge)


__all__ = ["AccumulatingWindows", "BufferedWindows", "Span", "WindowState", "window_state"]
