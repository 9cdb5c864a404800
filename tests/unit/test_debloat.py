"""Buffer debloating: the sizing decision (pure), the throughput estimate under a fake clock, and the channels.

``runtime/debloat.py`` caps a channel's batches so that its credit window holds about
``target_ms`` of its consumer's throughput; ``channels.OutputChannel`` splits larger batches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamjob.worker.config import BufferDebloat, JobConfig, parse_job_config
from streamjob.worker.errors import ConfigError
from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.runtime.channels import CREDITS, InputGate, LocalOutputChannel, RecordWriter
from streamjob.worker.runtime.debloat import Debloater, batch_limit
from streamjob.worker.testing import FakeClock

pytestmark = pytest.mark.unit


def test_a_window_of_credits_holds_the_target_time_of_throughput() -> None:
    # 1,000 records/s (a sink sleeping 1 ms per record), 1 s, 8 credits: 125 records per batch.
    assert batch_limit(1000.0, target_s=1.0, credits=8, min_batch=16, max_batch=4096) == 125
    assert batch_limit(1000.0, target_s=0.5, credits=8, min_batch=16, max_batch=4096) == 62
    # fast consumers get the configured buffer size, slow ones the floor, nothing goes outside
    assert batch_limit(5e6, target_s=1.0, credits=8, min_batch=16, max_batch=4096) == 4096
    assert batch_limit(10.0, target_s=1.0, credits=8, min_batch=16, max_batch=4096) == 16
    assert batch_limit(0.0, target_s=1.0, credits=8, min_batch=16, max_batch=4096) == 16
    assert batch_limit(1000.0, target_s=1.0, credits=8, min_batch=500, max_batch=100) == 100  # floor above the size


def _drain(debloater: Debloater, *, seconds: float, consumer_per_s: float, start: float, batch: int) -> float:
    """A saturated channel: every credit window full, the consumer taking one batch per batch/rate s."""
    now = start
    queue = [batch] * CREDITS
    for size in queue:
        debloater.sent(size, lambda t=now: t)
    while now < start + seconds:
        now += queue.pop(0) / consumer_per_s
        debloater.taken(1, now)
        queue.append(debloater.limit)
        debloater.sent(debloater.limit, lambda t=now: t)
    return now


def test_a_slow_consumer_shrinks_batches_to_the_target_and_a_fast_one_grows_them_back() -> None:
    settings = BufferDebloat()
    d = Debloater(settings, credits=CREDITS, max_batch=4096, now=0.0)
    assert d.limit == 16  # starts small: nothing bloats before the first sample
    now = _drain(d, seconds=3.0, consumer_per_s=1000.0, start=0.0, batch=d.limit)
    assert d.records_per_s == pytest.approx(1000.0, rel=0.05)
    assert 110 <= d.limit <= 140  # ~125: 8 batches hold ~1 s
    _drain(d, seconds=3.0, consumer_per_s=200_000.0, start=now, batch=d.limit)
    assert d.limit == 4096


def test_a_consumer_waiting_for_this_producer_counts_as_fast() -> None:
    # The producer sends a batch every 10 ms and the consumer takes each 0.1 ms later: the channel is
    # busy 1 % of the time, so the estimate is the consumer's capacity (~1M/s), not the producer's 10k/s.
    d = Debloater(BufferDebloat(), credits=CREDITS, max_batch=4096, now=0.0)
    now = 0.0
    for _ in range(100):
        d.sent(100, lambda t=now: t)
        d.taken(1, now + 0.0001)
        now += 0.01
    assert d.limit == 4096


def test_the_knobs_are_validated_with_the_field_named() -> None:
    base: dict[str, Any] = {"name": "j", "entrypoint": "job.py"}
    assert JobConfig.model_validate(base).buffer_debloat == BufferDebloat(enabled=True, target_ms=1000)
    for bad, field in (
        ({"target_ms": 0}, "buffer_debloat.target_ms"),
        ({"period_ms": 5}, "buffer_debloat.period_ms"),
        ({"min_batch_size": 0}, "buffer_debloat.min_batch_size"),
        ({"enabled": "sometimes"}, "buffer_debloat.enabled"),
        ({"target": 1000}, "buffer_debloat.target"),
    ):
        with pytest.raises(ConfigError, match=field):
            parse_job_config({**base, "buffer_debloat": bad}, source="job.json")


def _channel(clock: FakeClock, settings: BufferDebloat | None) -> tuple[LocalOutputChannel, InputGate]:
    gate = InputGate()
    channel = LocalOutputChannel(gate.add_channel((0, 0, 0)), clock)
    if settings is not None:
        channel.enable_debloating(settings, 4096)
    return channel, gate


def test_a_debloated_channel_splits_batches_and_queues_at_most_a_window_of_them() -> None:
    clock = FakeClock()
    channel, gate = _channel(clock, BufferDebloat(min_batch_size=16))

    async def scenario() -> None:
        sender = asyncio.create_task(channel.send_batch(list(range(1000))))
        await asyncio.sleep(0)
        queued = gate.channels[0].items
        assert [len(b) for b in queued] == [16] * CREDITS  # then it waits for credit
        assert not sender.done()
        received: list[Any] = []
        while len(received) < 1000:
            found = gate.poll()
            if found is None:
                await asyncio.sleep(0)
                continue
            received += found[1]
            clock.advance(50)
        await sender
        assert received == list(range(1000))  # nothing lost, reordered or duplicated

    asyncio.run(scenario())


def test_without_debloating_a_batch_goes_whole() -> None:
    channel, gate = _channel(FakeClock(), None)
    asyncio.run(channel.send_batch(list(range(10_000))))
    assert [len(b) for b in gate.channels[0].items] == [10_000]


def test_a_task_emits_at_most_one_capped_batch_per_channel() -> None:
    clock = FakeClock()
    channels = [_channel(clock, BufferDebloat(min_batch_size=40))[0] for _ in range(3)]
    channels[2].batch_limit = 10
    # keys may all go to the slowest channel: never more than its cap
    assert RecordWriter(channels, Partitioning.HASH, lambda r: r, 128, 0).batch_hint() == 10  # type: ignore[arg-type]
    assert RecordWriter(channels, Partitioning.REBALANCE, None, 128, 0).batch_hint() == 10  # type: ignore[arg-type]
    assert RecordWriter(channels, Partitioning.BROADCAST, None, 128, 0).batch_hint() == 10  # type: ignore[arg-type]
    assert RecordWriter(channels, Partitioning.FORWARD, None, 128, 1).batch_hint() == 40  # type: ignore[arg-type]


def test_the_first_batch_an_idle_consumer_takes_at_once_does_not_lift_the_cap() -> None:
    # A consumer needing 1 ms per record takes the first batch at once (it was idle), then one batch
    # per 16 ms. The first sample starts at that first credit, so it sees ~1,000 records/s.
    d = Debloater(BufferDebloat(), credits=CREDITS, max_batch=4096, now=0.0)
    for _ in range(CREDITS):
        d.sent(16, lambda: 0.0)
    d.taken(1, 0.00001)
    d.sent(16, lambda: 0.00001)
    assert d.limit == 16
    now = 0.00001
    for _ in range(3):
        now += 0.016
        d.taken(1, now)
        d.sent(d.limit, lambda t=now: t)
    assert d.records_per_s == pytest.approx(1000.0, rel=0.05)
    assert d.limit == 125


def test_a_fast_consumer_gets_full_batches_after_the_first_10ms() -> None:
    d = Debloater(BufferDebloat(), credits=CREDITS, max_batch=4096, now=0.0)
    now = 0.0
    while now < 0.02:
        d.sent(d.limit, lambda t=now: t)
        now += 0.00005  # a 16-record batch taken every 50 us: 320k records/s
        d.taken(1, now)
    assert d.limit == 4096
