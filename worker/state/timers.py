"""The keyed timer queues of one keyed backend (one for processing time, one for event time).

Holds ``(timestamp_ms, key)`` timers, deduplicated, and hands out due ones in time order (ties
in registration order). Deletion is lazy: a deleted timer stays in the heap until it reaches the
top or the heap is compacted.

Recovery contract: timers are part of the keyed snapshot (in the chunk of their key's key
group); after a restore, a subtask holds exactly the timers of the keys in its key-group range
that were registered and not yet fired or deleted at the checkpoint. Timers whose time passed
during the outage fire on the first ``pop_due_timers`` after the restore.

Callers: both keyed state backends (which own one queue each).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any


class TimerQueue:
    """Deduplicated min-heap of ``(timestamp_ms, key)`` timers with lazy deletion."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._live: set[tuple[int, Any]] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def register(self, timestamp_ms: int, key: Any) -> None:
        """Adds a timer; registering an existing ``(timestamp, key)`` again does nothing."""
        entry = (timestamp_ms, key)
        if entry in self._live:
            return
        self._live.add(entry)
        self._seq += 1
        heapq.heappush(self._heap, (timestamp_ms, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 1024:
            self._compact()

    def delete(self, timestamp_ms: int, key: Any) -> None:
        """Removes a timer if it is registered."""
        self._live.discard((timestamp_ms, key))

    def next_time(self) -> int | None:
        """The earliest live timer's timestamp, or None."""
        heap, live = self._heap, self._live
        while heap:
            ts, _, key = heap[0]
            if (ts, key) in live:
                return ts
            heapq.heappop(heap)
        return None

    def pop_due(self, now_ms: int) -> list[tuple[int, Any]]:
        """Removes and returns the timers with ``timestamp <= now_ms``, in time order."""
        heap, live = self._heap, self._live
        due: list[tuple[int, Any]] = []
        while heap and heap[0][0] <= now_ms:
            ts, _, key = heapq.heappop(heap)
            entry = (ts, key)
            if entry in live:
                live.remove(entry)
                due.append(entry)
        return due

    def copy_entries(self) -> list[tuple[int, Any]]:
        """A copy of the live timers (the synchronous part of a snapshot)."""
        return list(self._live)

    def restore(self, entries: Iterable[tuple[int, Any]]) -> None:
        """Adds restored timers (ordered by timestamp, then as given)."""
        for ts, key in sorted(entries, key=lambda entry: entry[0]):
            self.register(int(ts), key)

    def clear(self) -> None:
        """Drops every timer."""
        self._heap.clear()
        self._live.clear()

    def _compact(self) -> None:
        seen: set[tuple[int, Any]] = set()
        kept: list[tuple[int, int, Any]] = []
        for item in sorted(self._heap, key=lambda item: (item[0], item[1])):
            entry = (item[0], item[2])
            if entry in self._live and entry not in seen:
                seen.add(entry)
                kept.append(item)
        self._heap = kept  # sorted by (ts, seq): already a valid heap


__all__ = ["TimerQueue"]
