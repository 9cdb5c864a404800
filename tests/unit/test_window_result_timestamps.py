"""Window results carry ``window.max_timestamp()`` (end - 1) as their timestamp, as in Flink.

So a second event-time stage windows the results of a first one, and a process function after a window
sees the result's timestamp in ``ctx.timestamp()``. Records are ``(key, timestamp)``, in timestamp order,
one per batch from a parallelism-1 source with monotonous watermarks (nothing is late). Expected outputs
are derived by hand next to the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streamjob.worker.api import (
    CountTrigger,
    ProcessFunction,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.graph.job_graph import build_job_graph
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

STRATEGY = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])

# 1 s windows: a [0,1000) {100, 900} = 2 -> ts 999; a [1000,2000) {1500} = 1 -> 1999; a [2000,3000)
# {2200, 2300} = 2 -> 2999; a [4000,5000) {4999} = 1 -> 4999; a [5000,6000) {5000} = 1 -> 5999;
# a [6000,7000) {6100} = 1 -> 6999; a [9000,10000) {9999} = 1 -> 9999; b [0,1000) {300} = 1 -> 999;
# b [5000,6000) {5200} = 1 -> 5999.
RECORDS = [("a", 100), ("b", 300), ("a", 900), ("a", 1500), ("a", 2200), ("a", 2300)]
RECORDS += [("a", 4999), ("a", 5000), ("b", 5200), ("a", 6100), ("a", 9999)]
FIRST_STAGE = [
    (("a", 0, 2), 999),
    (("a", 1000, 1), 1999),
    (("a", 2000, 2), 2999),
    (("a", 4000, 1), 4999),
    (("a", 5000, 1), 5999),
    (("a", 6000, 1), 6999),
    (("a", 9000, 1), 9999),
    (("b", 0, 1), 999),
    (("b", 5000, 1), 5999),
]
# 5 s windows over the 1 s results by their timestamps: a [0,5000) holds 999, 1999, 2999 and 4999 (the
# [4000,5000) result is at 4999, not at its end 5000): 6 records in 4 windows; a [5000,10000) holds 5999,
# 6999, 9999: 3 in 3; b: 1 in 1 each.
SECOND_STAGE = [("a", 0, 6, 4), ("a", 5000, 3, 3), ("b", 0, 1, 1), ("b", 5000, 1, 1)]


class Counted(ProcessWindowFunction[Any, Any, Any]):
    """(key, window start, records)."""

    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, len(list(elements))))


class Totals(ProcessWindowFunction[Any, Any, Any]):
    """(key, window start, sum of the 1 s counts, how many 1 s results)."""

    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        results = list(elements)
        out.collect((key, context.window().start, sum(r[2] for r in results), len(results)))


class WithTimestamp(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))


def two_stages(items: list[Any], first: list[Any], second: list[Any]) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    per_second = (
        env.from_source(TestingSource(items), STRATEGY, "events")
        .uid("src")
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .process(Counted())
        .uid("1s")
    )
    per_second.process(WithTimestamp()).uid("stamps").add_sink(TestingSink(first)).uid("first")
    per_second.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(5000)).process(Totals()).uid("5s").add_sink(
        TestingSink(second)
    ).uid("second")
    return env


def test_one_second_windows_feed_five_second_windows_by_their_results_timestamps() -> None:
    first: list[Any] = []
    second: list[Any] = []
    run_in_process(two_stages(RECORDS, first, second), parallelism=2)
    assert sorted(first) == FIRST_STAGE
    assert sorted(second) == SECOND_STAGE


def test_a_crash_between_the_stages_windows_resumes_with_the_same_results() -> None:
    # Two crashes: after the first stage fired a's [0,1000) and [1000,2000) (while [2000,3000) is open in
    # its state), and after the second stage holds a's first results in its own open [0,5000) window.
    items = [*RECORDS[:5], TestingSource.ABORT, *RECORDS[5:8], TestingSource.ABORT, *RECORDS[8:]]
    first: list[Any] = []
    second: list[Any] = []
    env = two_stages(items, first, second)
    env.enable_checkpointing(50)
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 2
    assert sorted(first) == FIRST_STAGE
    assert sorted(second) == SECOND_STAGE


def test_a_count_trigger_on_event_time_windows_stamps_each_firing_with_the_windows_end() -> None:
    # CountTrigger(2) on 1 s windows fires a [0,1000) at its 2nd record and a [2000,3000) at its 2nd: both
    # results carry their window's max timestamp, whatever fired them.
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_source(TestingSource(RECORDS), STRATEGY, "events").uid("src").key_by(lambda r: r[0]).window(
        TumblingEventTimeWindows.of(1000)
    ).trigger(CountTrigger.of(2)).process(Counted()).uid("w").process(WithTimestamp()).uid("ts").add_sink(
        TestingSink(out)
    ).uid("out")
    run_in_process(env, parallelism=1)
    assert sorted(out) == [(("a", 0, 2), 999), (("a", 2000, 2), 2999)]


def test_processing_time_windows_results_are_not_stamped() -> None:
    # Their results have no event time here (nothing reads it): the stream stays plain, no unstamp runs.
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection([("a", 1)]).key_by(lambda r: r[0]).window(TumblingProcessingTimeWindows.of(1000)).process(
        Counted()
    ).add_sink(TestingSink([]))
    graph = build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)
    assert [t.name for v in graph.vertices for t in v.operators] == ["Collection Source", "Window", "Sink"]
    assert not any("result_timestamps" in t.options for t in env.transformations)
