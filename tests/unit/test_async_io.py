"""Async I/O (``AsyncDataStream``): exact outputs ordered and unordered, timeouts, capacity, recovery.

Jobs run through the in-process test kit on the runtime's real task loop; the queues' watermark
rules are checked on the pure queue classes. Requests sleep for deterministic times, so unordered
results really complete out of order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar

import pytest

from streamjob.worker.api import AsyncDataStream, AsyncFunction, RichMapFunction, StreamExecutionEnvironment
from streamjob.worker.errors import ConfigError
from streamjob.worker.runtime.async_wait import _Entry, _Ordered, _Unordered
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


class Lookup(AsyncFunction[int, Any]):
    """``value -> [(value, value * 10)]`` after a delay that makes early records finish last."""

    in_flight: ClassVar[int] = 0
    most_in_flight: ClassVar[int] = 0
    calls: ClassVar[list[tuple[int, int]]] = []  # (attempt, value)

    def __init__(self, delay_ms: Any = None) -> None:
        self.delay_ms = delay_ms or (lambda v: (7 - v % 7) * 0.5)

    async def async_invoke(self, value: int) -> list[Any]:
        cls = Lookup  # counters shared by the subclasses
        cls.calls.append((self.get_runtime_context().get_attempt_number(), value))
        cls.in_flight += 1
        cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            await asyncio.sleep(self.delay_ms(value) / 1000)
        finally:
            cls.in_flight -= 1
        return [(value, value * 10)]

    @classmethod
    def reset(cls) -> None:
        cls.in_flight = cls.most_in_flight = 0
        cls.calls = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    Lookup.reset()
    Seen.log = []


class Seen(RichMapFunction[int, int]):
    """Logs (attempt, value) of the records that reach the async operator from the source."""

    log: ClassVar[list[tuple[int, int]]] = []

    def map(self, value: int) -> int:
        type(self).log.append((self.get_runtime_context().get_attempt_number(), value))
        return value


def run_job(
    items: list[Any],
    *,
    ordered: bool,
    function: AsyncFunction[Any, Any] | None = None,
    capacity: int = 10,
    timeout_ms: int = 5_000,
    batch_size: int = 16,
    **kwargs: Any,
) -> tuple[list[Any], Any]:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(kwargs.pop("interval_ms", 10))
    out: list[Any] = []
    stream = env.from_source(TestingSource(items, batch_size=batch_size)).map(Seen())
    wait = AsyncDataStream.ordered_wait if ordered else AsyncDataStream.unordered_wait
    wait(stream, function or Lookup(), timeout_ms, capacity).uid("lookup").add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=1, **kwargs)
    return out, result


def expected(values: list[int]) -> list[tuple[int, int]]:
    return [(v, v * 10) for v in values]


def test_ordered_wait_emits_in_input_order() -> None:
    values = list(range(120))
    out, _ = run_job(values, ordered=True)
    assert [tuple(r) for r in out] == expected(values)


def test_unordered_wait_emits_each_result_once_as_completed() -> None:
    values = list(range(120))
    out, _ = run_job(values, ordered=False)
    got = [tuple(r) for r in out]
    assert sorted(got) == expected(values)
    assert got != expected(values)  # the delays make later records of a slice finish first


def test_capacity_bounds_requests_in_flight_and_backpressures_the_input() -> None:
    """At most ``capacity`` requests run at once, and the task reads at most one slice ahead of them."""
    values = list(range(200))
    ahead: list[int] = []

    class Watching(Lookup):
        async def async_invoke(self, value: int) -> list[Any]:
            ahead.append(len(Seen.log) - len(Lookup.calls))  # records read but not yet requested
            return await super().async_invoke(value)

    out, _ = run_job(values, ordered=True, function=Watching(lambda v: 2.0), capacity=4, batch_size=8)
    assert [tuple(r) for r in out] == expected(values)
    assert Lookup.most_in_flight == 4
    assert max(ahead) <= 8  # one source batch: the source is not polled while records wait


def test_timeout_handler_gives_the_fallback_result() -> None:
    class Slow(Lookup):
        async def async_invoke(self, value: int) -> list[Any]:
            if value == 3:
                await asyncio.sleep(30)
            return [(value, value * 10)]

        def timeout(self, value: int) -> list[Any]:
            return [(value, "timed out")]

    out, _ = run_job(list(range(6)), ordered=True, function=Slow(), timeout_ms=100)
    assert [tuple(r) for r in out] == [(0, 0), (1, 10), (2, 20), (3, "timed out"), (4, 40), (5, 50)]


def test_timeout_without_handler_fails_the_job_with_the_fix() -> None:
    class Hangs(Lookup):
        async def async_invoke(self, value: int) -> list[Any]:
            await asyncio.sleep(30)
            return []

    _, result = run_job([1, 2], ordered=False, function=Hangs(), timeout_ms=50, max_restarts=0, raise_on_failure=False)
    assert result.state.value == "FAILED"
    assert "Hangs.async_invoke(1) did not finish within the async timeout" in result.failures[-1]
    assert "define timeout(self, value)" in result.failures[-1]


def test_a_request_error_fails_the_job_and_a_bad_result_names_the_fix() -> None:
    class Broken(Lookup):
        async def async_invoke(self, value: int) -> Any:
            return value  # not a collection

    _, result = run_job([1], ordered=True, function=Broken(), max_restarts=0, raise_on_failure=False)
    assert result.state.value == "FAILED"
    assert "Broken.async_invoke must return a collection of results" in result.failures[-1]


def test_in_flight_requests_are_checkpointed_and_reissued_after_a_crash() -> None:
    """Slow requests (20 ms) under 10 ms checkpoints: checkpoints hold requests in flight; output stays exact."""
    values = list(range(150))
    items: list[Any] = [*values[:90], TestingSource.ABORT, *values[90:]]
    for ordered in (True, False):
        Lookup.reset()
        Seen.log = []
        out, result = run_job(items, ordered=ordered, function=Lookup(lambda v: 20.0), max_restarts=1)
        assert result.restarts == 1
        got = [tuple(r) for r in out]
        assert (got if ordered else sorted(got)) == expected(values)
        # Requested in attempt 1 without being read again by it: re-issued from the checkpoint's state.
        reissued = {v for a, v in Lookup.calls if a == 1} - {v for a, v in Seen.log if a == 1}
        assert reissued, "no checkpoint held a request in flight"
        assert Counter(v for _, v in Lookup.calls if v in reissued).most_common(1)[0][1] >= 2


def test_bad_arguments_are_refused_with_the_fix() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = env.from_collection([1])
    with pytest.raises(ConfigError, match="takes an AsyncFunction"):
        AsyncDataStream.ordered_wait(stream, lambda v: [v], 100)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout takes milliseconds > 0"):
        AsyncDataStream.ordered_wait(stream, Lookup(), 0)
    with pytest.raises(ConfigError, match="capacity takes an integer >= 1"):
        AsyncDataStream.unordered_wait(stream, Lookup(), 100, capacity=0)

    class NoInvoke(AsyncFunction[int, int]):
        pass

    with pytest.raises(ConfigError, match="must define async def async_invoke"):
        AsyncDataStream.unordered_wait(stream, NoInvoke(), 100)


# -- the queues' order rules (pure) ----------------------------------------------------------------
def entries(queue: _Ordered | _Unordered, values: list[int]) -> list[_Entry]:
    made = []
    for v in values:
        e = _Entry(v)
        queue.add(e)
        made.append(e)
    return made


def finish(queue: _Ordered | _Unordered, entry: _Entry) -> None:
    entry.done, entry.result = True, [entry.value]
    queue.finished(entry)


def test_unordered_never_emits_across_a_watermark() -> None:
    q = _Unordered()
    a, b = entries(q, [1, 2])
    q.add_watermark(100)
    (c,) = entries(q, [3])
    finish(q, c)
    assert q.pop_ready() == []  # 3 follows watermark 100, which waits for 1 and 2
    finish(q, b)
    assert q.pop_ready() == [([2], None)]  # within its segment, as completed
    assert q.values() == [1, 3]  # what a snapshot stores
    finish(q, a)
    assert q.pop_ready() == [([1], 100), ([3], None)]  # 1, then the watermark, then 3
    assert not q


def test_ordered_holds_later_results_and_watermarks_behind_the_head() -> None:
    q = _Ordered()
    a, b = entries(q, [1, 2])
    q.add_watermark(100)
    (c,) = entries(q, [3])
    finish(q, c)
    finish(q, b)
    assert q.pop_ready() == []
    finish(q, a)
    assert q.pop_ready() == [([1, 2], 100), ([3], None)]
    assert not q


def test_unordered_results_never_cross_a_watermark_downstream() -> None:
    """Event time = value; early records of each batch answer last. Downstream, every result must
    arrive while the watermark is still below its timestamp (else it would be late there), and the
    watermark must have passed every earlier batch's records (watermarks are held, not dropped)."""
    from streamjob.worker.api import KeyedProcessFunction, WatermarkStrategy

    seen: list[tuple[int, int]] = []

    class Observe(KeyedProcessFunction[Any, Any, Any]):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            seen.append((value[0], ctx.timer_service().current_watermark()))
            out.collect(value)

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(50)
    out: list[Any] = []
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v: v)
    timed = env.from_source(TestingSource(list(range(200)), batch_size=8)).assign_timestamps_and_watermarks(strategy)
    slow_first = Lookup(lambda v: (8 - v % 8) * 1.5)
    results = AsyncDataStream.unordered_wait(timed, slow_first, 5_000, 64)
    results.key_by(lambda r: 0).process(Observe()).add_sink(TestingSink(out))
    run_in_process(env, parallelism=1)
    assert sorted(tuple(r) for r in out) == expected(list(range(200)))
    assert all(watermark < value for value, watermark in seen)
    assert max(watermark for _, watermark in seen) >= 150  # the watermarks did pass the async operator


def test_results_are_emitted_while_the_task_waits_for_input() -> None:
    """Records 0.6 s apart into a consumer task: each result goes on when its request finishes, not
    when the next record arrives (that would take ~0.6 s)."""
    import time

    from streamjob.worker.api import KeyedProcessFunction

    finished: dict[int, float] = {}
    arrived: dict[int, float] = {}

    class Timed(Lookup):
        async def async_invoke(self, value: int) -> list[Any]:
            result = await super().async_invoke(value)
            finished[value] = time.monotonic()
            return result

    class Arrive(KeyedProcessFunction[Any, Any, Any]):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            arrived[value[0]] = time.monotonic()
            out.collect(value)

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(100)
    out: list[Any] = []
    paced = env.from_generator(lambda i: i, 4, 1 / 0.6).key_by(lambda v: v % 2)  # the async operator in a consumer task
    results = AsyncDataStream.unordered_wait(paced, Timed(lambda v: 5.0), 5_000, 10)
    results.key_by(lambda r: 0).process(Arrive()).add_sink(TestingSink(out))
    run_in_process(env, parallelism=1)
    assert sorted(tuple(r) for r in out) == expected([0, 1, 2, 3])
    delays = [arrived[v] - finished[v] for v in (0, 1, 2)]  # the last one is flushed by the end of input
    assert max(delays) < 0.3, delays


def test_a_slow_service_holds_the_source_back_across_the_network() -> None:
    """The async operator in a consumer task (after key_by): its capacity, then the channel's credits
    (8 batches of 16 records), stop the source; the source never runs far ahead of the requests."""
    ahead: list[int] = []

    class Watching(Lookup):
        async def async_invoke(self, value: int) -> list[Any]:
            ahead.append(len(Seen.log) - len(Lookup.calls))  # read by the source task, not yet requested
            return await super().async_invoke(value)

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(100)
    env.set_buffer_size(16)
    out: list[Any] = []
    values = list(range(600))
    keyed = env.from_source(TestingSource(values, batch_size=16)).map(Seen()).key_by(lambda v: v % 4)
    AsyncDataStream.unordered_wait(keyed, Watching(lambda v: 2.0), 5_000, 4).add_sink(TestingSink(out))
    run_in_process(env, parallelism=1)
    assert sorted(tuple(r) for r in out) == expected(values)
    assert Lookup.most_in_flight == 4
    # credits (8 x 16) + the batch being sent + the slice waiting for capacity: never the whole input
    assert max(ahead) <= 8 * 16 + 16 + 16, max(ahead)
