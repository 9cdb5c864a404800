"""The check of the event-time window benchmark job's output (``bench/jobs/event_windows.py``).

With ``--verify`` the job's sinks add up the square of every window's count; a window lost, fired
twice or cut in two changes that sum, which the harness compares with ``expected_count_squares``,
derived here independently of the runtime from the job's documented event formula. Called by
``harness._measurements``.
"""

from __future__ import annotations

from collections import Counter

from streamjob.worker.api import SlidingEventTimeWindows, TumblingEventTimeWindows

EVENTS_PER_MS = 100  # the job's: 100 events per millisecond of event time


def event_key_and_time(i: int, keys: int) -> tuple[int, int]:
    """Event ``i``'s key index and timestamp, as the job generates them."""
    return i % keys, i // EVENTS_PER_MS - (i * 7919) % 150


def expected_count_squares(records: int, keys: int, sliding: bool) -> int:
    """Σ over every (key, window) of its count squared, for a failure-free run."""
    assigner = SlidingEventTimeWindows.of(10_000, 1000) if sliding else TumblingEventTimeWindows.of(1000)
    counts: Counter[tuple[int, int]] = Counter()
    for i in range(records):
        key, ts = event_key_and_time(i, keys)
        for window in assigner.assign_windows(ts):
            counts[(key, window.start)] += 1
    return sum(c * c for c in counts.values())
