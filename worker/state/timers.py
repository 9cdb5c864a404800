"""The keyed timer queues of one keyed backend (one for processing time, one for event time).

Holds ``(timestamp_ms, key)`` timers, deduplicated, and hands out due ones in time order (ties
in registration order). Timers are bucketed by timestamp: ``{timestamp: {key: None}}`` (an
insertion-ordered set of keys) and a heap of the distinct timestamps. Many keys share a
timestamp (every key's window ending at the same time, a job-wide interval), so registering is
one dict insert and a due timestamp hands out its whole bucket at once instead of one heap pop
per timer. Deleting removes the key from its bucket at once; an emptied bucket's timestamp
stays in the heap until it reaches the top.

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
    """Deduplicated timers, bucketed by timestamp (see the module docstring)."""

    __slots__ = ("_buckets", "_heap", "_size")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[Any, None]] = {}
        self._heap: list[int] = []  # the timestamps of the buckets (and of emptied ones not popped yet)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def register(self, timestamp_ms: int, key: Any) -> None:
        """Adds a timer; registering an existing ``(timestamp, key)`` again does nothing."""
        bucket = self._buckets.get(timestamp_ms)
        if bucket is None:
            self._buckets[timestamp_ms] = {key: None}
            heapq.heappush(self._heap, timestamp_ms)
            self._size += 1
            if len(self._heap) > 2 * len(self._buckets) + 1024:
                self._heap = sorted(self._buckets)  # emptied buckets' stale entries (a sorted list is a heap)
        elif key not in bucket:
            bucket[key] = None
            self._size += 1

    def delete(self, timestamp_ms: int, key: Any) -> None:
        """Removes a timer if it is registered."""
        bucket = self._buckets.get(timestamp_ms)
        if bucket is not None and key in bucket:
            del bucket[key]
            self._size -= 1
            if not bucket:
                del self._buckets[timestamp_ms]  # its heap entry is dropped when it reaches the top

    def next_time(self) -> int | None:
        """The earliest live timer's timestamp, or None."""
        heap, buckets = self._heap, self._buckets
        while heap:
            ts = heap[0]
            if ts in buckets:
                return ts
            heapq.heappop(heap)
        return None

    def pop_due(self, now_ms: int) -> list[tuple[int, Any]]:
        """Removes and returns the timers with ``timestamp <= now_ms``, in time order."""
        heap, buckets = self._heap, self._buckets
        due: list[tuple[int, Any]] = []
        while heap and heap[0] <= now_ms:
            ts = heapq.heappop(heap)
            bucket = buckets.pop(ts, None)
            if bucket:
                self._size -= len(bucket)
                due.extend([(ts, key) for key in bucket])
        return due

    def copy_entries(self) -> list[tuple[int, Any]]:
        """A copy of the live timers (the synchronous part of a snapshot)."""
        return [(ts, key) for ts, bucket in self._buckets.items() for key in bucket]

    def restore(self, entries: Iterable[tuple[int, Any]]) -> None:
        """Adds restored timers (ordered by timestamp, then as given)."""
        for ts, key in sorted(entries, key=lambda entry: entry[0]):
            self.register(int(ts), key)

    def clear(self) -> None:
        """Drops every timer."""
        self._heap.clear()
        self._buckets.clear()
        self._size = 0


__all__ = ["TimerQueue"]
