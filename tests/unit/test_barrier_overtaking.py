"""``runtime/barriers/`` against a real ``InputGate``, a fake clock and a fake checkpoint target.

Covers what the pure state machines (``test_barriers.py``) leave to the package: unaligned
barriers overtaking queued batches, the in-flight data captured for them (exactly the overtaken
batches plus what other channels deliver before their barrier), the aligned timeout switching a
checkpoint to unaligned, and aborts. ``step`` takes items out of the gate the way the task does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from streamjob.worker.config import CheckpointingMode, CheckpointSettings
from streamjob.worker.protocol.events import END_OF_STREAM, Barrier, EndOfStream
from streamjob.worker.runtime.barriers import InFlightCapture, InputBarriers
from streamjob.worker.runtime.channels import InputGate
from tests.unit.runtime_support import FakeClock

pytestmark = pytest.mark.unit


class FakeTarget:
    """Records each snapshot the inputs hand over; ``ok`` False makes the synchronous part fail."""

    def __init__(self) -> None:
        self.ok = True
        self.snapshots: list[tuple[Barrier, float, InFlightCapture | None]] = []
        self.subsumed: list[int] = []

    def checkpoint(self, barrier: Barrier, alignment_s: float, capture: InFlightCapture | None) -> bool:
        self.snapshots.append((barrier, alignment_s, capture))
        return self.ok

    def decline_subsumed(self, checkpoint_id: int) -> None:
        self.subsumed.append(checkpoint_id)


class Inputs:
    def __init__(self, channels: int, **settings: Any) -> None:
        self.clock = FakeClock()
        self.gate = InputGate()
        self.channels = [self.gate.add_channel((0, i, 0)) for i in range(channels)]
        self.target = FakeTarget()
        self.barriers = InputBarriers(self.gate, CheckpointSettings(**settings), self.target, self.clock)
        self.processed: list[tuple[int, list[Any]]] = []

    def push(self, channel: int, *items: Any) -> None:
        for item in items:
            self.channels[channel].push(item)

    def step(self) -> Any:
        """One item, taken and handled as the task's consumer loop does; None when nothing is ready."""
        found = self.gate.take_head_barrier(self.barriers.accepts)
        if found is not None:
            self.barriers.on_barrier(found[0].index, found[1], overtook=True)
            return found[1]
        polled = self.gate.poll()
        if polled is None:
            return None
        channel, item = polled
        if type(item) is list:
            if self.barriers.captures:
                self.barriers.capture(channel.index, item)
            self.processed.append((channel.index, item))
        elif type(item) is Barrier:
            self.barriers.on_barrier(channel.index, item)
        elif type(item) is EndOfStream:
            channel.finished = True
            self.barriers.on_end_of_stream(channel.index)
        return item

    def drain(self) -> None:
        while self.step() is not None:
            pass

    def queue(self, channel: int) -> list[Any]:
        return list(self.channels[channel].items)


def run(test: Callable[[], None]) -> None:
    """Runs ``test`` inside an event loop (a capture's ``done`` is an asyncio future)."""

    async def body() -> None:
        test()

    asyncio.run(body())


def b(cid: int, *, unaligned: bool = False, savepoint: str | None = None) -> Barrier:
    return Barrier(cid, 0, unaligned=unaligned, savepoint_dir=savepoint)


# -- the gate's primitives ------------------------------------------------------------------------------


def test_move_to_front_passes_batches_but_never_an_earlier_event() -> None:
    gate = InputGate()
    channel = gate.add_channel((0, 0, 0))
    for item in ([1], b(1), [2], [3], b(2)):
        channel.items.append(item)
    assert channel.move_to_front(2) == [[2], [3]]
    assert list(channel.items) == [[1], b(1), b(2), [2], [3]]
    assert channel.move_to_front(1, mark_unaligned=True) == [[1]]
    assert list(channel.items) == [b(1, unaligned=True), [1], b(2), [2], [3]]
    assert channel.move_to_front(5) is None


def test_take_head_barrier_skips_blocked_channels_and_unaccepted_barriers() -> None:
    gate = InputGate()
    a, c = gate.add_channel((0, 0, 0)), gate.add_channel((0, 1, 0))
    a.push(b(1, unaligned=True))
    c.push(b(1))
    gate.block(0)

    def accept(barrier: Barrier) -> bool:
        return barrier.unaligned

    assert gate.take_head_barrier(accept) is None
    gate.unblock_all()
    assert gate.take_head_barrier(accept) == (a, b(1, unaligned=True))
    assert gate.take_head_barrier(accept) is None
    assert gate.poll() == (c, b(1))


# -- unaligned: overtaking and capture ------------------------------------------------------------------


def test_an_unaligned_barrier_overtakes_the_queued_batches_which_are_its_in_flight_data() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        inputs.push(0, [1, 2], [3])
        inputs.push(1, [10])
        inputs.push(0, b(1, unaligned=True))
        assert inputs.queue(0) == [b(1, unaligned=True), [1, 2], [3]]  # moved in front at once
        assert inputs.step() == b(1, unaligned=True)  # taken before channel 1's batch
        ((barrier, _, capture),) = inputs.target.snapshots
        assert barrier.unaligned and capture is not None
        assert capture.records == [1, 2, 3] and capture.waiting == {1}
        inputs.drain()
        assert capture.records == [1, 2, 3, 10]  # channel 1 delivered [10] before its barrier
        assert not capture.complete
        inputs.push(1, [11])
        inputs.push(1, b(1))  # the checkpoint is unaligned here now: this barrier overtakes [11] too
        assert inputs.queue(1)[0] == b(1)
        inputs.drain()
        assert capture.records == [1, 2, 3, 10, 11]
        assert capture.complete and inputs.barriers.captures == {}
        # every batch is still processed exactly once, after the barrier
        assert sorted(r for _, batch in inputs.processed for r in batch) == [1, 2, 3, 10, 11]

    run(test)


def test_records_after_a_channels_barrier_are_not_captured() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        inputs.push(0, b(1, unaligned=True), [5])
        inputs.push(1, [6], b(1, unaligned=True), [7])
        inputs.drain()
        ((_, _, capture),) = inputs.target.snapshots
        assert capture is not None and capture.complete
        assert capture.records == [6]

    run(test)


def test_the_rest_of_a_batch_in_progress_comes_before_the_batches_the_barrier_overtook() -> None:
    def test() -> None:
        inputs = Inputs(1, unaligned=True)
        inputs.push(0, [4, 5])
        inputs.push(0, b(1, unaligned=True))
        found = inputs.gate.take_head_barrier(inputs.barriers.accepts)
        assert found is not None
        inputs.barriers.overtook_rest(0, 1, [2, 3])  # taken between two slices of [1, 2, 3]
        inputs.barriers.on_barrier(0, found[1], overtook=True)
        ((_, _, capture),) = inputs.target.snapshots
        assert capture is not None and capture.records == [2, 3, 4, 5] and capture.complete

    run(test)


def test_a_failed_snapshot_captures_nothing_and_does_not_make_barriers_overtake() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        inputs.target.ok = False
        inputs.push(0, [1], b(1, unaligned=True))
        inputs.step()
        assert inputs.barriers.captures == {}
        inputs.push(1, [2], b(1))
        assert inputs.queue(1) == [[2], b(1)]  # stays behind the batch

    run(test)


# -- the aligned timeout --------------------------------------------------------------------------------


def test_a_barrier_queued_longer_than_the_aligned_timeout_becomes_unaligned_and_overtakes() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True, aligned_timeout_ms=100)
        inputs.push(0, [1], [2], b(1))
        inputs.push(1, [3])
        assert inputs.queue(0) == [[1], [2], b(1)]  # aligned: waits behind the batches
        inputs.clock.advance(0.099)
        inputs.barriers.check_timeouts()
        assert inputs.queue(0) == [[1], [2], b(1)]
        inputs.clock.advance(0.001)
        inputs.barriers.check_timeouts()
        assert inputs.queue(0) == [b(1, unaligned=True), [1], [2]]
        inputs.step()
        ((barrier, _, capture),) = inputs.target.snapshots
        assert barrier.unaligned and capture is not None
        assert capture.records == [1, 2] and capture.waiting == {1}

    run(test)


def test_a_long_alignment_switches_to_unaligned_and_releases_the_blocked_channel() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True, aligned_timeout_ms=100)
        inputs.push(0, b(1), [9])
        inputs.push(1, [1])
        assert inputs.step() == b(1)
        inputs.clock.advance(0.050)
        assert inputs.step() == [1]
        assert inputs.step() is None  # channel 0 is blocked behind its barrier
        assert inputs.target.snapshots == []
        inputs.clock.advance(0.060)
        inputs.barriers.check_timeouts()
        ((barrier, alignment_s, capture),) = inputs.target.snapshots
        assert barrier.unaligned and alignment_s == pytest.approx(0.110)
        assert capture is not None and capture.waiting == {1} and capture.records == []
        assert inputs.step() == [9]  # released
        assert capture.records == []  # channel 0 delivered its barrier: [9] is after it

    run(test)


def test_savepoint_barriers_never_time_out() -> None:
    def test() -> None:
        inputs = Inputs(1, unaligned=True, aligned_timeout_ms=100)
        inputs.push(0, [1], b(1, savepoint="s3://b/sp"))
        inputs.clock.advance(10)
        inputs.barriers.check_timeouts()
        assert inputs.queue(0) == [[1], b(1, savepoint="s3://b/sp")]

    run(test)


# -- aligned, at-least-once, aborts ---------------------------------------------------------------------


def test_an_aligned_checkpoint_blocks_until_every_channel_delivered_and_measures_the_alignment() -> None:
    def test() -> None:
        inputs = Inputs(2)
        inputs.push(0, b(1), [5])
        inputs.push(1, [6])
        inputs.step()
        inputs.clock.advance(0.2)
        inputs.drain()
        assert inputs.target.snapshots == []
        inputs.push(1, b(1))
        inputs.drain()
        ((barrier, alignment_s, capture),) = inputs.target.snapshots
        assert not barrier.unaligned and capture is None and alignment_s == pytest.approx(0.2)
        assert [batch for _, batch in inputs.processed] == [[6], [5]]  # [5] waited for the alignment

    run(test)


def test_at_least_once_never_blocks() -> None:
    def test() -> None:
        inputs = Inputs(2, mode=CheckpointingMode.AT_LEAST_ONCE)
        inputs.push(0, b(1), [5])
        inputs.drain()
        assert [batch for _, batch in inputs.processed] == [[5]]
        inputs.push(1, b(1))
        inputs.drain()
        assert [s[0].id for s in inputs.target.snapshots] == [1]

    run(test)


def test_an_abort_releases_the_alignment_and_ends_the_capture() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        inputs.push(0, b(1, unaligned=True))
        inputs.step()
        ((_, _, capture),) = inputs.target.snapshots
        assert capture is not None and not capture.complete
        inputs.barriers.abort(1)
        assert capture.complete and inputs.barriers.captures == {}
        inputs.push(1, [1], b(1))
        assert inputs.queue(1) == [[1], b(1)]  # no longer overtakes
        inputs.drain()
        assert len(inputs.target.snapshots) == 1  # its late barrier is ignored

    run(test)


def test_a_newer_barrier_declines_the_alignment_it_overtook() -> None:
    def test() -> None:
        inputs = Inputs(2)
        inputs.push(0, b(1), b(2))
        inputs.push(1, b(2))
        inputs.drain()
        assert inputs.target.subsumed == [1]
        assert [s[0].id for s in inputs.target.snapshots] == [2]

    run(test)


def test_end_of_stream_completes_a_capture() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        inputs.push(0, b(1, unaligned=True))
        inputs.push(1, [4], END_OF_STREAM)
        inputs.drain()
        ((_, _, capture),) = inputs.target.snapshots
        assert capture is not None and capture.complete and capture.records == [4]

    run(test)
