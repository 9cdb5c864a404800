"""Barrier state machines (``streamjob.worker.runtime.barriers``) against a recording fake host."""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.protocol.events import Barrier
from streamjob.worker.runtime.barriers import AlignedBarrierHandler, AtLeastOnceBarrierTracker

pytestmark = pytest.mark.unit


class FakeHost:
    """A ``BarrierHost`` that records what the handler asked for, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.blocked: set[int] = set()

    def block(self, channel: int) -> None:
        self.calls.append(("block", channel))
        self.blocked.add(channel)

    def unblock_all(self) -> None:
        self.calls.append(("unblock_all",))
        self.blocked.clear()

    def snapshot(self, barrier: Barrier, capture: frozenset[int]) -> None:
        self.calls.append(("snapshot", barrier.id, capture))

    def end_capture(self, checkpoint_id: int, channel: int) -> None:
        self.calls.append(("end_capture", checkpoint_id, channel))

    def cancel_alignment(self, checkpoint_id: int) -> None:
        self.calls.append(("cancel", checkpoint_id))

    def take(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


def b(cid: int, *, unaligned: bool = False) -> Barrier:
    return Barrier(cid, 1_000 + cid, unaligned=unaligned)


# -- aligned ------------------------------------------------------------------------------------------


def test_aligned_blocks_each_channel_until_all_delivered_then_snapshots_once() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 3)
    handler.on_barrier(0, b(1), 0)
    assert host.take() == [("block", 0)]
    assert handler.aligning
    handler.on_barrier(2, b(1), 5)
    assert host.take() == [("block", 2)]
    handler.on_barrier(1, b(1), 9)
    assert host.take() == [("snapshot", 1, frozenset()), ("unblock_all",)]
    assert host.blocked == set()
    assert not handler.aligning
    assert handler.last_done == 1


def test_aligned_single_channel_snapshots_at_once() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 1)
    handler.on_barrier(0, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset()), ("unblock_all",)]


def test_aligned_completed_checkpoint_ignores_late_and_older_barriers() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_barrier(0, b(2), 0)
    handler.on_barrier(1, b(2), 0)
    host.take()
    handler.on_barrier(0, b(2), 1)
    handler.on_barrier(1, b(1), 1)
    assert host.take() == []
    handler.on_barrier(1, b(3), 2)
    assert host.take() == [("block", 1)]


def test_aligned_next_checkpoint_after_completion_aligns_again() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    for cid in (1, 2):
        handler.on_barrier(1, b(cid), 0)
        handler.on_barrier(0, b(cid), 0)
    assert host.take() == [
        ("block", 1),
        ("snapshot", 1, frozenset()),
        ("unblock_all",),
        ("block", 1),
        ("snapshot", 2, frozenset()),
        ("unblock_all",),
    ]


def test_aligned_end_of_stream_on_the_missing_channel_completes_the_alignment() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_barrier(0, b(1), 0)
    assert host.take() == [("block", 0)]
    handler.on_end_of_stream(1)
    assert host.take() == [("snapshot", 1, frozenset()), ("unblock_all",)]
    assert handler.last_done == 1


def test_aligned_ended_channel_is_not_waited_for_by_later_checkpoints() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_end_of_stream(1)
    assert host.take() == []
    handler.on_barrier(0, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset()), ("unblock_all",)]


def test_aligned_newer_barrier_cancels_the_older_alignment() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_barrier(0, b(1), 0)
    host.take()
    handler.on_barrier(1, b(2), 1)
    assert host.take() == [("unblock_all",), ("cancel", 1), ("block", 1)]
    handler.on_barrier(0, b(2), 2)
    assert host.take() == [("snapshot", 2, frozenset()), ("unblock_all",)]


def test_alignment_timeout_switches_to_unaligned_capturing_the_missing_channels() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 3, aligned_timeout_ms=100)
    handler.on_barrier(0, b(1), 1_000)
    host.take()
    handler.check_timeout(1_099)
    assert host.take() == []
    handler.check_timeout(1_100)
    assert host.take() == [("snapshot", 1, frozenset({1, 2})), ("unblock_all",)]
    assert not handler.aligning
    handler.on_barrier(2, b(1), 1_200)
    assert host.take() == [("end_capture", 1, 2)]
    assert handler.last_done == -1
    handler.on_end_of_stream(1)
    assert host.take() == [("end_capture", 1, 1)]
    assert handler.last_done == 1
    handler.check_timeout(5_000)
    assert host.take() == []


def test_zero_alignment_timeout_never_switches() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2, aligned_timeout_ms=0)
    handler.on_barrier(0, b(1), 0)
    host.take()
    handler.check_timeout(10**9)
    assert host.take() == []
    assert handler.aligning


def test_abort_releases_blocked_channels() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 3)
    handler.on_barrier(0, b(4), 0)
    handler.on_barrier(1, b(4), 0)
    host.take()
    handler.abort(3)
    assert host.take() == []
    handler.abort(4)
    assert host.take() == [("unblock_all",), ("cancel", 4)]
    assert host.blocked == set()
    assert not handler.aligning


def test_barrier_of_an_aborted_checkpoint_does_not_block_again() -> None:
    """A late barrier n after the coordinator aborted n must not block a channel until barrier n+1."""
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_barrier(0, b(4), 0)
    handler.abort(4)
    host.take()
    handler.on_barrier(1, b(4), 1)
    assert host.blocked == set()
    assert ("block", 1) not in host.take()


def test_abort_before_the_first_barrier_makes_the_late_barrier_ignored() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.abort(4)
    handler.on_barrier(0, b(4), 0)
    assert host.take() == []
    assert host.blocked == set()
    handler.on_barrier(0, b(5), 1)
    assert host.take() == [("block", 0)]


# -- unaligned ------------------------------------------------------------------------------------------


def test_unaligned_snapshots_at_the_first_barrier_and_captures_the_others() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 3, always_unaligned=True)
    handler.on_barrier(1, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset({0, 2})), ("unblock_all",)]
    handler.on_barrier(0, b(1), 1)
    assert host.take() == [("end_capture", 1, 0)]
    handler.on_barrier(2, b(1), 2)
    assert host.take() == [("end_capture", 1, 2)]
    assert handler.last_done == 1
    assert host.blocked == set()


def test_unaligned_flag_on_the_barrier_switches_an_aligned_handler() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2)
    handler.on_barrier(0, b(1, unaligned=True), 0)
    assert host.take() == [("snapshot", 1, frozenset({1})), ("unblock_all",)]
    handler.on_end_of_stream(1)
    assert host.take() == [("end_capture", 1, 1)]
    assert handler.last_done == 1


def test_unaligned_single_channel_captures_nothing() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 1, always_unaligned=True)
    handler.on_barrier(0, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset()), ("unblock_all",)]
    assert handler.last_done == 1


def test_unaligned_newer_barrier_cancels_capture_of_the_older_without_unblocking() -> None:
    host = FakeHost()
    handler = AlignedBarrierHandler(host, 2, always_unaligned=True)
    handler.on_barrier(0, b(1), 0)
    host.take()
    handler.on_barrier(0, b(2), 1)
    assert host.take() == [("cancel", 1), ("snapshot", 2, frozenset({1})), ("unblock_all",)]


# -- at-least-once ----------------------------------------------------------------------------------------


def test_at_least_once_never_blocks_and_snapshots_when_all_channels_delivered() -> None:
    host = FakeHost()
    tracker = AtLeastOnceBarrierTracker(host, 3)
    tracker.on_barrier(0, b(1), 0)
    tracker.on_barrier(1, b(1), 0)
    assert host.take() == []
    tracker.on_barrier(2, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset())]
    assert tracker.last_done == 1
    tracker.check_timeout(10**9)
    assert host.take() == []


def test_at_least_once_overlapping_checkpoints_complete_in_order() -> None:
    host = FakeHost()
    tracker = AtLeastOnceBarrierTracker(host, 2)
    tracker.on_barrier(0, b(1), 0)
    tracker.on_barrier(0, b(2), 0)
    tracker.on_barrier(1, b(1), 0)
    assert host.take() == [("snapshot", 1, frozenset())]
    tracker.on_barrier(1, b(2), 0)
    assert host.take() == [("snapshot", 2, frozenset())]
    assert tracker.pending == {}


def test_at_least_once_newer_checkpoint_completing_first_subsumes_the_older() -> None:
    host = FakeHost()
    tracker = AtLeastOnceBarrierTracker(host, 2)
    tracker.on_barrier(0, b(1), 0)
    tracker.on_barrier(0, b(2), 0)
    tracker.on_barrier(1, b(2), 0)
    assert host.take() == [("cancel", 1), ("snapshot", 2, frozenset())]
    tracker.on_barrier(1, b(1), 0)
    assert host.take() == []
    assert tracker.pending == {}


def test_at_least_once_end_of_stream_completes_pending_checkpoints() -> None:
    host = FakeHost()
    tracker = AtLeastOnceBarrierTracker(host, 2)
    tracker.on_barrier(0, b(1), 0)
    tracker.on_end_of_stream(1)
    assert host.take() == [("snapshot", 1, frozenset())]
    tracker.on_barrier(0, b(2), 0)
    assert host.take() == [("snapshot", 2, frozenset())]


def test_at_least_once_abort_forgets_the_checkpoint() -> None:
    host = FakeHost()
    tracker = AtLeastOnceBarrierTracker(host, 2)
    tracker.on_barrier(0, b(1), 0)
    tracker.abort(1)
    assert tracker.pending == {}
    tracker.on_barrier(0, b(2), 0)
    tracker.on_barrier(1, b(2), 0)
    assert host.take() == [("snapshot", 2, frozenset())]
