"""Timestamps kept through ``map``, ``flat_map``, ``filter`` and ``process`` (Flink's semantics), end to end at p=2.

Records are ``(key, timestamp, value)``; the assigner reads field 1, and every test maps the records to
something without that field first, so only a carried timestamp can place them in windows or give
``ctx.timestamp()``. One record per batch and the assigner chained to the source (parallelism 1): the
watermark after each record is its largest timestamp minus 1. Expected outputs are derived by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streamjob.worker.api import (
    CountTrigger,
    GlobalWindows,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TimeEvictor,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

LATE = OutputTag("late")
STRATEGY = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])


def events(env: StreamExecutionEnvironment, records: list[tuple[str, int, int]]) -> Any:
    return (
        env.from_source(TestingSource(records))
        .uid("src")
        .assign_timestamps_and_watermarks(STRATEGY)
        .uid("ts")
        .set_parallelism(1)
    )


class Summed(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, sum(v for _, v in elements)))


def test_windows_after_a_map_use_the_timestamps_the_map_kept() -> None:
    # Mapped to (key, 10 * value). Tumbling 10: a@1, a@8 -> a [0, 10) = 10 + 30; b@2 -> b [0, 10) = 20;
    # a@12 -> a [10, 20) = 40; b@15 -> b [10, 20) = 50 (watermark 14 fires both [0, 10)); a@4 is then late
    # (9 <= 14): its mapped value goes to the side output; b@21 -> b [20, 30) = 70 at the end of input.
    records = [("a", 1, 1), ("b", 2, 2), ("a", 8, 3), ("a", 12, 4), ("b", 15, 5), ("a", 4, 6), ("b", 21, 7)]
    out: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    windows = (
        events(env, records)
        .map(lambda r: (r[0], 10 * r[2]))
        .uid("map")
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(10))
        .side_output_late_data(LATE)
        .process(Summed())
        .uid("windows")
    )
    windows.add_sink(TestingSink(out)).uid("out")
    windows.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
    run_in_process(env, parallelism=2)
    assert sorted(out) == [("a", 0, 40), ("a", 10, 40), ("b", 0, 20), ("b", 10, 50), ("b", 20, 70)]
    assert late == [("a", 60)]


class WithTimestamp(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))


class TimerAfter(KeyedProcessFunction[Any, Any, Any]):
    """At the record's timestamp + 100 (event time), emits (key, the timer's time)."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service().register_event_time_timer(ctx.timestamp() + 100)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect((ctx.get_current_key(), timestamp))


def test_flat_map_filter_and_process_keep_each_records_timestamp() -> None:
    # flat_map: (key, v) and (key, -v); filter keeps v > 0; process sees the source record's timestamp. A keyed
    # function after a map registers an event-time timer at timestamp + 100; the end of input fires them.
    records = [("a", 5, 1), ("b", 7, 2), ("a", 30, 3)]
    seen: list[Any] = []
    timers: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = events(env, records)
    stream.flat_map(lambda r: [(r[0], r[2]), (r[0], -r[2])]).uid("fm").filter(lambda p: p[1] > 0).uid("pos").process(
        WithTimestamp()
    ).uid("stamp").add_sink(TestingSink(seen)).uid("seen")
    stream.map(lambda r: r[0]).uid("keys").key_by(lambda k: k).process(TimerAfter()).uid("timers").add_sink(
        TestingSink(timers)
    ).uid("timers-out")
    run_in_process(env, parallelism=2)
    assert sorted(seen) == [(("a", 1), 5), (("a", 3), 30), (("b", 2), 7)]
    assert sorted(timers) == [("a", 105), ("a", 130), ("b", 107)]


class Values(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, [v for _, v in elements]))


def test_reduce_union_and_an_evictor_after_a_map() -> None:
    # Running sums after a map (a reduce does not read timestamps: it gets plain values); a union of the mapped
    # stream and a plain one; a global window firing every 3 records of a key whose TimeEvictor(15) keeps
    # those within 15 ms of the newest *carried* timestamp. Mapped values 10..60 at 0, 10, 20, 21, 40, 41:
    # the 3rd record fires [20, 30] (the one at 0 <= 20 - 15 is evicted); the 6th fires with the 5 kept
    # ones, newest 41, cutoff 26: [50, 60].
    records = [("a", 0, 1), ("a", 10, 2), ("a", 20, 3), ("a", 21, 4), ("a", 40, 5), ("a", 41, 6)]
    sums: list[Any] = []
    both: list[Any] = []
    evicted: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = events(env, records)
    mapped = stream.map(lambda r: (r[0], 10 * r[2])).uid("map").set_parallelism(1)  # chained: the key's order
    mapped.key_by(lambda r: r[0]).reduce(lambda x, y: (x[0], x[1] + y[1])).uid("sum").add_sink(TestingSink(sums)).uid(
        "sums"
    )
    mapped.union(stream.map(lambda r: ("plain", r[2])).uid("plain")).add_sink(TestingSink(both)).uid("both")
    mapped.key_by(lambda r: r[0]).window(GlobalWindows.create()).trigger(CountTrigger.of(3)).evictor(
        TimeEvictor.of(15)
    ).process(Values()).uid("evict").add_sink(TestingSink(evicted)).uid("evicted")
    run_in_process(env, parallelism=2)
    values = [10, 20, 30, 40, 50, 60]
    assert sorted(sums) == sorted(("a", sum(values[: i + 1])) for i in range(6))
    assert sorted(both) == sorted([("a", v) for v in values] + [("plain", i) for i in range(1, 7)])
    assert evicted == [("a", [20, 30]), ("a", [50, 60])]


def test_streams_without_event_time_are_never_stamped_and_unread_unstamps_are_dropped() -> None:
    from streamjob.worker.graph.job_graph import build_job_graph

    plain = StreamExecutionEnvironment.get_execution_environment()
    plain.from_sequence(1, 5).map(lambda v: v).process(WithTimestamp()).add_sink(TestingSink([]))
    assert not any("stamp" in t.options for t in plain.transformations)
    env = StreamExecutionEnvironment.get_execution_environment()
    events(env, [("a", 1, 1)]).map(lambda r: r).uid("map").key_by(lambda r: r[0]).window(
        TumblingEventTimeWindows.of(10)
    ).process(Summed()).uid("w").add_sink(TestingSink([])).uid("out")
    graph = build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)
    chains = [[t.name for t in v.operators] for v in graph.vertices]
    # The window reads the map's pairs (nothing unstamps them); its own results carry their window's end
    # (stamped pairs too): the sink, reading no timestamp, gets the values through an unstamp chained to it.
    assert chains == [["Source", "Timestamps/Watermarks"], ["Map"], ["Window", "Unstamp", "Sink"]]


def test_two_input_operators_get_the_values_of_a_stamped_stream() -> None:
    # connect() after an event-time map: the CoMapFunction sees the mapped values, never (timestamp, value) pairs.
    from streamjob.worker.api import CoMapFunction

    class Both(CoMapFunction[Any, Any, Any]):
        def map1(self, value: Any) -> Any:
            return ("first", value)

        def map2(self, value: Any) -> Any:
            return ("second", value)

    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = events(env, [("a", 1, 1), ("b", 2, 2)])
    mapped = stream.map(lambda r: (r[0], 10 * r[2])).uid("map")
    mapped.connect(stream.filter(lambda r: True).uid("f")).map(Both()).uid("co").add_sink(TestingSink(out)).uid("o")
    run_in_process(env, parallelism=2)
    assert sorted(out) == [("first", ("a", 10)), ("first", ("b", 20)), ("second", ("a", 1, 1)), ("second", ("b", 2, 2))]
