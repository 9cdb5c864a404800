"""Credit-based output channels (``runtime/channels.py``): the time spent waiting for credit."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamjob.worker.errors import PipelineError
from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.runtime.channels import CREDITS, InputGate, LocalOutputChannel, RecordWriter
from streamjob.worker.state.key_groups import KeyGroupAssigner, operator_index_for
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


class _Recording:
    """An output channel that keeps the batches sent to it."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def send_batch(self, batch: list[Any]) -> None:
        self.batches.append(batch)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=7),
    records=st.lists(st.tuples(st.one_of(st.integers(), st.text(max_size=4)), st.integers()), max_size=60),
)
def test_a_hashed_batch_goes_whole_and_in_order_to_each_keys_channel(n: int, records: list[Any]) -> None:
    channels = [_Recording() for _ in range(n)]
    writer = RecordWriter(cast(Any, channels), Partitioning.HASH, lambda r: r[0], 128, 0)
    assigner = KeyGroupAssigner(128)
    asyncio.run(writer.emit(list(records)))
    asyncio.run(writer.emit(list(records)))  # the second time every key's channel comes from the cache
    for index, channel in enumerate(channels):
        expected = [r for r in records if operator_index_for(assigner.assign(r[0]), 128, n) == index]
        assert channel.batches == ([expected, expected] if expected else [])


def test_a_key_error_of_the_key_selector_reaches_the_job_and_is_not_taken_for_a_cache_miss() -> None:
    """The writer catches KeyError for a key it has not cached: the user function's own must pass through."""
    channels = [_Recording() for _ in range(2)]
    lookup = {"a": "x"}
    writer = RecordWriter(cast(Any, channels), Partitioning.HASH, lambda r: lookup[r], 128, 0)
    asyncio.run(writer.emit(["a", "a"]))  # "a" is cached now
    with pytest.raises(KeyError, match="'b'"):
        asyncio.run(writer.emit(["a", "b"]))
    assert sum(len(b) for c in channels for b in c.batches) == 2  # the failed batch sent nothing


def test_an_unhashable_or_unsupported_key_fails_with_the_fix_named() -> None:
    channels = [_Recording() for _ in range(2)]
    writer = RecordWriter(cast(Any, channels), Partitioning.HASH, lambda r: r, 128, 0)
    with pytest.raises(PipelineError, match="key_by"):
        asyncio.run(writer.emit([object()]))
    with pytest.raises(PipelineError, match=r"builtins\.list.*key_by"):
        asyncio.run(writer.emit([["a", "list"]]))
