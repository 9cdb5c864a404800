"""Credit-based output channels (``runtime/channels.py``): the time spent waiting for credit."""

from __future__ import annotations

import asyncio

import pytest

from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.runtime.channels import CREDITS, InputGate, LocalOutputChannel, RecordWriter
from tests.unit.runtime_support import FakeClock

pytestmark = pytest.mark.unit


def test_a_wait_for_credit_counts_while_it_lasts_and_after_it_ends() -> None:
    async def scenario() -> tuple[float, float, float, float]:
        gate = InputGate()
        channel = LocalOutputChannel(gate.add_channel((0, 0, 0)))
        writer = RecordWriter([channel], Partitioning.FORWARD, None, 128, 0)
        for n in range(CREDITS):
            await writer.emit([n])
        before = writer.backpressured_s()
        blocked = asyncio.create_task(writer.emit(["one too many"]))
        await asyncio.sleep(0.05)
        during = writer.backpressured_s()
        gate.poll()  # the consumer takes a batch and returns its credit
        await blocked
        after = writer.backpressured_s()
        await asyncio.sleep(0.02)
        return before, during, after, writer.backpressured_s()

    before, during, after, later = asyncio.run(scenario())
    assert before == 0.0
    assert during >= 0.05
    assert after >= during
    assert later == after


def test_the_wait_for_credit_is_measured_on_the_injected_clock() -> None:
    clock = FakeClock()

    async def scenario() -> tuple[float, float]:
        gate = InputGate()
        channel = LocalOutputChannel(gate.add_channel((0, 0, 0)), clock)
        for n in range(CREDITS):
            await channel.send_batch([n])
        blocked = asyncio.create_task(channel.send_batch(["one too many"]))
        await asyncio.sleep(0)
        clock.advance(2.5)
        during = channel.backpressured_total_s()
        clock.advance(0.5)
        gate.poll()
        await blocked
        return during, channel.backpressured_total_s()

    assert asyncio.run(scenario()) == (2.5, 3.0)
