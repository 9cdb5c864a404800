"""Side outputs, late data, count windows and window_all through the real runtime (``run_in_process``, p=2).

The JobMaster and the slots run on one event loop with real sockets, so records of a side output
cross the network between subtasks like any stream's; outputs are exact and derived by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streamjob.worker.api import (
    KeyedProcessFunction,
    OutputTag,
    ProcessAllWindowFunction,
    ProcessFunction,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.errors import ConfigError
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

ODD = OutputTag("odd")
BIG = OutputTag("big")
UNREAD = OutputTag("nobody-reads-this")
LATE = OutputTag("late")


class SplitOdd(ProcessFunction[Any, Any]):
    """Even values to the main output, odd ones to ``ODD``; every record also to a tag no stream reads."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.output(UNREAD, value)
        if value[1] % 2:
            ctx.output(ODD, value)
        else:
            out.collect(value)


class BigOnTimer(KeyedProcessFunction[Any, Any, Any]):
    """Passes records on; at the end of input (an event-time timer) sends the key's count to ``BIG`` if > 10."""

    def open(self, runtime_context: Any) -> None:
        from streamjob.worker.api import ValueStateDescriptor

        self.count = runtime_context.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        ctx.timer_service().register_event_time_timer(1000)
        out.collect(value)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        if self.count.value() > 10:
            ctx.output(BIG, (ctx.get_current_key(), self.count.value()))


RECORDS = [(k, v) for v in range(30) for k in ("a", "b", "c")]


def test_side_outputs_of_process_functions_cross_the_network_keyed_at_p2() -> None:
    # Even values go on; odd ones go to ODD, keyed by key and summed: a, b and c each have the odd values
    # 1, 3, ..., 29 (sum 225). Every key has 15 even values (0..28), 15 > 10: BIG gets (key, 15) for each
    # key from the keyed function's timer, which the end of input's watermark fires.
    main: list[Any] = []
    odd_sums: list[Any] = []
    big: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: 0)
    split = env.from_source(TestingSource(RECORDS, batch_size=7)).uid("src").process(SplitOdd()).uid("split")
    split.get_side_output(ODD).key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1])).uid("sum").add_sink(
        TestingSink(odd_sums)
    ).uid("odd-out")
    keyed = split.assign_timestamps_and_watermarks(strategy).uid("ts").key_by(lambda r: r[0])
    evens = keyed.process(BigOnTimer()).uid("count")
    evens.add_sink(TestingSink(main)).uid("main-out")
    evens.get_side_output(BIG).add_sink(TestingSink(big)).uid("big-out")
    run_in_process(env, parallelism=2)
    assert sorted(main) == sorted(r for r in RECORDS if r[1] % 2 == 0)
    final = {k: max(v for kk, v in odd_sums if kk == k) for k in "abc"}
    assert final == {"a": 225, "b": 225, "c": 225}
    assert len(odd_sums) == 45  # one running sum per odd record
    assert sorted(big) == [("a", 15), ("b", 15), ("c", 15)]


class Listed(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, [ts for _, ts in elements]))


def test_late_records_go_to_the_side_output_at_the_lateness_boundary() -> None:
    # Tumbling 10, lateness 5, watermark = largest timestamp - 1, one record per batch. 1; 12 (watermark 11)
    # fires [0, 10) with [1]; 3 is within the lateness (9 + 5 > 11): fires again with [1, 3]. 20 (watermark
    # 19) fires [10, 20) with [12] and drops [0, 10) (9 + 5 <= 19); 4 is late (4 + 5 <= 19): side output.
    # 14 fires [10, 20) again with [12, 14]. 25 (watermark 24) drops [10, 20) at 19 + 5 = 24: 15 is late,
    # exactly at the boundary. The end of input fires [20, 30) with [20, 25].
    stamps = [1, 12, 3, 20, 4, 14, 25, 15]
    main: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])
    windows = (
        env.from_source(TestingSource([("a", t) for t in stamps]))
        .uid("src")
        .assign_timestamps_and_watermarks(strategy)
        .uid("ts")
        .set_parallelism(1)  # chained to the source: one watermark, after each record
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(10))
        .allowed_lateness(5)
        .side_output_late_data(LATE)
        .process(Listed())
        .uid("windows")
    )
    windows.add_sink(TestingSink(main)).uid("main-out")
    windows.get_side_output(LATE).map(lambda r: ("late", *r)).add_sink(TestingSink(late)).uid("late-out")
    run_in_process(env, parallelism=2)
    assert main == [("a", 0, [1]), ("a", 0, [1, 3]), ("a", 10, [12]), ("a", 10, [12, 14]), ("a", 20, [20, 25])]
    assert late == [("late", "a", 4), ("late", "a", 15)]


class Total(ProcessAllWindowFunction[Any, Any]):
    def process(self, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect(sum(v for _, v in elements))


def test_count_windows_per_key_and_over_the_whole_stream() -> None:
    # count_window(4) per key over a, b, c with values 0..29 each: windows of 4 consecutive values, 7 per key
    # (28 values; 28 and 29 are a partial window, never emitted): sums 0+1+2+3 = 6, 22, 38, ..., 102.
    # count_window(5, 5) (sliding with slide = size) gives the same windows of 5; count_window_all(30) sums
    # 30 consecutive records of the whole stream (whatever the keys): 3 windows of the 90 records.
    per_key: list[Any] = []
    sliding: list[Any] = []
    everything: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    src = env.from_source(TestingSource(RECORDS, batch_size=5)).uid("src")
    src.key_by(lambda r: r[0]).count_window(4).reduce(lambda a, b: (a[0], a[1] + b[1])).uid("w4").add_sink(
        TestingSink(per_key)
    ).uid("o1")
    src.key_by(lambda r: r[0]).count_window(5, 5).process(Listed()).uid("w5").add_sink(TestingSink(sliding)).uid("o2")
    src.count_window_all(30).process(Total()).uid("all").add_sink(TestingSink(everything)).uid("o3")
    run_in_process(env, parallelism=2)
    assert sorted(per_key) == sorted((k, sum(range(4 * i, 4 * i + 4))) for k in "abc" for i in range(7))
    assert len(sliding) == 18 and all(len(values) == 5 for _, _, values in sliding)
    assert sorted(everything) == [sum(v for _, v in RECORDS[i : i + 30]) for i in (0, 30, 60)]


def test_wrong_tags_and_unsupported_combinations_are_refused() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    stream = env.from_source(TestingSource([1]))
    with pytest.raises(ConfigError, match=r"get_side_output takes an OutputTag"):
        stream.get_side_output("late")
    with pytest.raises(ConfigError, match="OutputTag needs a non-empty name"):
        OutputTag("")
    with pytest.raises(ConfigError, match=r"count_window size must be an integer > 0"):
        stream.key_by(lambda r: r).count_window(0)
    from streamjob.worker.api import CountTrigger, EventTimeSessionWindows

    timed = stream.assign_timestamps_and_watermarks(
        WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r)
    )
    with pytest.raises(ConfigError, match="merges windows and takes only its default trigger"):
        timed.key_by(lambda r: r).window(EventTimeSessionWindows.with_gap(10)).trigger(CountTrigger.of(2))


def test_a_side_output_is_its_own_edge_and_never_chained() -> None:
    # Same parallelism and a forward edge would chain map -> side output; the tag keeps them apart, the
    # producer ends its task, and the edge names its tag (part of the graph's fingerprint).
    from streamjob.worker.graph.job_graph import build_job_graph

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    split = env.from_sequence(1, 10).uid("src").process(SplitOdd()).uid("split")
    split.get_side_output(ODD).uid("odd").add_sink(TestingSink([])).uid("odd-out")
    graph = build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)
    producer = next(v for v in graph.vertices if any(t.effective_uid() == "split" for t in v.operators))
    assert producer.operators[-1].effective_uid() == "split"
    assert [(e.tag, graph.vertex(e.target).head.effective_uid()) for e in producer.outputs] == [("odd", "odd")]
    plain = StreamExecutionEnvironment.get_execution_environment()
    plain.set_parallelism(2)
    plain.from_sequence(1, 10).uid("src").process(SplitOdd()).uid("split").map(lambda r: r).uid("odd").add_sink(
        TestingSink([])
    ).uid("odd-out")
    assert build_job_graph(plain.transformations, default_parallelism=2, max_parallelism=128).fingerprint() != (
        graph.fingerprint()
    )
