"""The keyed timer queue (``state/timers.py``): timers bucketed by timestamp, handed out in time order.

Ties fire in registration order, a timer registered twice fires once, a deleted one never (also
when its timestamp is registered again later), and the copy a snapshot takes restores the same queue.
"""

from __future__ import annotations

import pytest

from streamjob.worker.state.timers import TimerQueue

pytestmark = pytest.mark.unit


def test_due_timers_in_time_order_ties_in_registration_order() -> None:
    q = TimerQueue()
    for ts, key in [(20, "b"), (10, "x"), (20, "a"), (10, "y"), (20, "b"), (30, "c")]:
        q.register(ts, key)
    assert len(q) == 5  # (20, "b") once
    assert q.next_time() == 10
    assert q.pop_due(9) == []
    assert q.pop_due(20) == [(10, "x"), (10, "y"), (20, "b"), (20, "a")]
    assert len(q) == 1
    assert q.pop_due(100) == [(30, "c")]
    assert q.next_time() is None and len(q) == 0


def test_deleted_timers_never_fire_and_can_be_registered_again() -> None:
    q = TimerQueue()
    q.register(10, "a")
    q.register(10, "b")
    q.delete(10, "a")
    q.delete(10, "missing")
    q.delete(99, "a")
    assert len(q) == 1
    q.delete(10, "b")
    assert q.next_time() is None  # the emptied timestamp is skipped
    q.register(10, "b")
    q.register(10, "a")
    assert q.pop_due(10) == [(10, "b"), (10, "a")]  # the order of the new registrations
    assert q.pop_due(10) == []


def test_churn_of_one_timestamp_keeps_the_heap_small() -> None:
    q = TimerQueue()
    for _ in range(10_000):
        q.register(5, "k")
        q.delete(5, "k")
    assert len(q._heap) <= 1024 + 2
    q.register(7, "k")
    assert q.pop_due(10) == [(7, "k")]


def test_a_copy_restores_the_same_timers() -> None:
    q = TimerQueue()
    for i in range(50):
        q.register(i % 7, f"k{i}")
    q.delete(3, "k3")
    copy = q.copy_entries()
    restored = TimerQueue()
    restored.restore(copy)
    assert len(restored) == len(q) == 49
    assert restored.pop_due(100) == q.pop_due(100)
