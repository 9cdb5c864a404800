"""Interval joins and window joins / co-groups, exact outputs derived by hand.

Whole jobs run in process (``run_in_process``) where the result cannot depend on how the inputs
interleave; lateness and buffer cleanup, which depend on when the watermark moves, are checked on
the interval join operator itself with the watermarks the test gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import (
    CoGroupFunction,
    ProcessJoinFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.runtime.context import TaskInfo
from streamjob.worker.runtime.join_operators import IntervalJoinOperator
from streamjob.worker.runtime.operators import OperatorSetup
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

LEFT = [("a", 0), ("a", 10), ("b", 5)]
RIGHT = [("a", 2), ("a", 9), ("a", 25), ("b", 3), ("b", 20)]


def _strategy() -> WatermarkStrategy:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])


def _out_of_order() -> WatermarkStrategy:
    return WatermarkStrategy.for_bounded_out_of_orderness(100).with_timestamp_assigner(lambda r: r[1])


class Pair(ProcessJoinFunction[Any, Any, Any]):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Any) -> None:
        assert (ctx.get_left_timestamp(), ctx.get_right_timestamp()) == (left[1], right[1])
        out.collect((left, right, ctx.get_timestamp()))


def _interval_job(
    env: StreamExecutionEnvironment, lower: int, upper: int, exclusive: bool = False, uid: str = "join"
) -> Any:
    left = env.from_source(TestingSource(LEFT), _out_of_order()).key_by(lambda r: r[0])
    right = env.from_source(TestingSource(sorted(RIGHT, key=lambda r: r[1])), _out_of_order()).key_by(lambda r: r[0])
    joined = left.interval_join(right).between(lower, upper)
    if exclusive:
        joined = joined.lower_bound_exclusive().upper_bound_exclusive()
    return joined.process(Pair()).uid(uid)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_interval_join_pairs_each_left_record_with_the_right_records_in_its_interval(parallelism: int) -> None:
    """between(-2, 5): a@0 meets a@2 ([-2, 5]); a@10 meets a@9 ([8, 15]); b@5 meets b@3 ([3, 10]); a@25, b@20 none."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    _interval_job(env, -2, 5).add_sink(TestingSink(out))
    run_in_process(env, parallelism=parallelism)
    assert sorted(out) == [
        (("a", 0), ("a", 2), 2),
        (("a", 10), ("a", 9), 10),
        (("b", 5), ("b", 3), 5),
    ]


def test_interval_join_bounds_are_inclusive_unless_made_exclusive() -> None:
    """between(2, 9): a@0 meets a@2 and a@9 (both bounds); exclusive, (2, 9) holds neither; nothing else meets."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    _interval_job(env, 2, 9).add_sink(TestingSink(out))
    _interval_job(env, 2, 9, exclusive=True, uid="exclusive").add_sink(TestingSink(out))
    run_in_process(env, parallelism=1)
    assert sorted(out) == [(("a", 0), ("a", 2), 2), (("a", 0), ("a", 9), 9)]


def test_interval_join_drops_late_records_and_cleans_its_buffers(tmp_path: Path) -> None:
    """On the operator, the test choosing the order: between(0, 10).

    a@100 (left) is buffered; watermark 102; right a@103 meets it; watermark 110 fires the left cleanup
    timer (100 + 10): right a@110 no longer finds a@100 and is kept (110 >= 110 is not late); right
    a@104 is late (104 < 110) and dropped; the final watermark empties every buffer.
    """
    env = StreamExecutionEnvironment()
    t = _interval_job(env, 0, 10).transformation
    info = TaskInfo("j", "job", "join (1/1)", "join", 0, 1, 128, 0)
    op = IntervalJoinOperator(OperatorSetup(info, t, (0, 127), "hashmap", False, tmp_path, None))
    op.open()
    try:
        assert op.process_batch([(0, ("a", 100))]) == []
        op.on_watermark(102)
        assert op.process_batch([(1, ("a", 103))]) == [(("a", 100), ("a", 103), 103)]
        op.on_watermark(110)
        assert op.process_batch([(1, ("a", 110)), (1, ("a", 104))]) == []
        assert op.late_records_dropped == 1
        op.on_watermark(2**63 - 1)
        assert op.backend is not None
        op.backend.set_current_key("a")
        assert op._buffers[0].is_empty() and op._buffers[1].is_empty()
    finally:
        op.close()


def test_interval_join_needs_keyed_event_time_inputs() -> None:
    env = StreamExecutionEnvironment()
    plain = env.from_collection(LEFT)
    keyed = plain.key_by(lambda r: r[0])
    with pytest.raises(PipelineError, match="joins two keyed streams"):
        keyed.interval_join(plain)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs lower <= upper"):
        keyed.interval_join(keyed).between(5, 1)
    with pytest.raises(ConfigError, match="interval_join is event time"):
        keyed.interval_join(keyed).between(0, 1).process(Pair())
    with pytest.raises(ConfigError, match="ProcessJoinFunction"):
        keyed.interval_join(keyed).between(0, 1).process(lambda a, b: a)  # type: ignore[arg-type]


WINDOW_LEFT = [("a", 10, "L1"), ("a", 50, "L2"), ("b", 120, "L3")]
WINDOW_RIGHT = [("a", 20, "R1"), ("c", 30, "R4"), ("b", 150, "R2"), ("b", 210, "R3")]


def _sides(env: StreamExecutionEnvironment) -> tuple[Any, Any]:
    return (
        env.from_source(TestingSource(WINDOW_LEFT), _strategy()),
        env.from_source(TestingSource(WINDOW_RIGHT), _strategy()),
    )


@pytest.mark.parametrize("parallelism", [1, 2])
def test_window_join_pairs_the_records_of_one_key_and_window(parallelism: int) -> None:
    """Windows of 100 ms: [0, 100) a: L1, L2 x R1; c: R4 alone; [100, 200) b: L3 x R2; [200, 300) b: R3 alone."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    left, right = _sides(env)
    left.join(right).where(lambda r: r[0]).equal_to(lambda r: r[0]).window(TumblingEventTimeWindows.of(100)).apply(
        lambda a, b: a[2] + b[2]
    ).add_sink(TestingSink(out))
    run_in_process(env, parallelism=parallelism)
    assert sorted(out) == ["L1R1", "L2R1", "L3R2"]


class Groups(CoGroupFunction[Any, Any, Any]):
    def co_group(self, first: Any, second: Any, out: Any) -> None:
        out.collect((sorted(r[2] for r in first), sorted(r[2] for r in second)))


def test_window_co_group_gives_both_sides_even_when_one_is_empty() -> None:
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    left, right = _sides(env)
    left.co_group(right).where(lambda r: r[0]).equal_to(lambda r: r[0]).window(TumblingEventTimeWindows.of(100)).apply(
        Groups()
    ).add_sink(TestingSink(out))
    run_in_process(env, parallelism=2)
    assert sorted(out) == [([], ["R3"]), ([], ["R4"]), (["L1", "L2"], ["R1"]), (["L3"], ["R2"])]


def test_window_join_needs_keys_and_timestamps() -> None:
    env = StreamExecutionEnvironment()
    plain = env.from_collection(WINDOW_LEFT)
    with pytest.raises(PipelineError, match="call where"):
        plain.join(plain).equal_to(lambda r: r[0])
    with pytest.raises(PipelineError, match="before window"):
        plain.join(plain).where(lambda r: r[0]).window(TumblingEventTimeWindows.of(100))
    with pytest.raises(ConfigError, match="needs event timestamps on both streams of the join"):
        plain.join(plain).where(lambda r: r[0]).equal_to(lambda r: r[0]).window(TumblingEventTimeWindows.of(100))
