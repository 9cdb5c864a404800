"""``connect``: co-map, co-flat-map, co-process and keyed co-process, run whole in process (``run_in_process``).

Exact outputs derived by hand. The two inputs' records interleave in an order no test may rely on,
so the functions below are written to give one answer whatever the interleaving — as a correct
Flink job must — except where event time makes the order part of the semantics: a keyed co-process
timer at ``T`` fires once the watermark of *both* inputs passed ``T`` (the minimum over the inputs),
so every record of either input with a timestamp <= ``T`` has been processed by then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import (
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedCoProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.job_graph import build_job_graph
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

A = [("a", 100), ("b", 150), ("a", 300), ("a", 500)]
B = [("a", 50), ("a", 120), ("b", 140), ("a", 300), ("b", 400), ("a", 450)]


def _monotonous() -> WatermarkStrategy:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])


class Tag(CoMapFunction[Any, Any, Any]):
    def map1(self, value: Any) -> Any:
        return ("first", value)

    def map2(self, value: Any) -> Any:
        return ("second", value)


class Split(CoFlatMapFunction[Any, Any, Any]):
    def flat_map1(self, value: Any, out: Any) -> None:
        for ch in value:
            out.collect(ch)

    def flat_map2(self, value: Any, out: Any) -> Any:
        return [value] * value


def test_co_map_and_co_flat_map_see_each_input_through_their_own_method() -> None:
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    env.from_collection([1, 2, 3]).connect(env.from_collection(["x", "y"])).map(Tag()).add_sink(TestingSink(out))
    assert run_in_process(env, parallelism=2).state == "FINISHED"
    assert sorted(out, key=repr) == [("first", 1), ("first", 2), ("first", 3), ("second", "x"), ("second", "y")]

    env = StreamExecutionEnvironment()
    out = []
    env.from_collection(["ab", "c"]).connect(env.from_collection([2, 0, 1])).flat_map(Split()).add_sink(
        TestingSink(out)
    )
    run_in_process(env, parallelism=2)
    assert sorted(out, key=repr) == sorted(["a", "b", "c", 2, 2, 1], key=repr)


class Stamps(CoProcessFunction[Any, Any, Any]):
    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((1, value[0], ctx.timestamp()))

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((2, value[0], ctx.timestamp()))


def test_co_process_gives_each_input_its_own_event_timestamps() -> None:
    """Input 1's timestamp is ``r[1]``; input 2's strategy reads ``r[1] * 10``: ctx.timestamp() follows the input."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    first = env.from_collection(A[:2]).assign_timestamps_and_watermarks(_monotonous())
    tenfold = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1] * 10)
    second = env.from_collection(B[:2]).assign_timestamps_and_watermarks(tenfold)
    first.connect(second).process(Stamps()).add_sink(TestingSink(out))
    run_in_process(env, parallelism=1)
    assert sorted(out) == [(1, "a", 100), (1, "b", 150), (2, "a", 500), (2, "a", 1200)]


class CountBefore(KeyedCoProcessFunction[Any, Any, Any, Any]):
    """Input 1 asks "how many input-2 records of my key up to my timestamp?", answered by an event-time timer."""

    def open(self, runtime_context: Any) -> None:
        self.seen = runtime_context.get_list_state(ListStateDescriptor("seen", int))
        self.asked = runtime_context.get_state(ValueStateDescriptor("asked", int, 0))

    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        self.asked.update(self.asked.value() + 1)
        ctx.timer_service().register_event_time_timer(value[1])

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        self.seen.add(value[1])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        up_to = sum(1 for t in self.seen.get() if t <= timestamp)
        out.collect((ctx.get_current_key(), timestamp, up_to, self.asked.value(), str(ctx.time_domain())))


def _count_before(env: StreamExecutionEnvironment, first: Any, second: Any, keyed_later: bool) -> Any:
    if keyed_later:
        return first.connect(second).key_by(lambda r: r[0], lambda r: r[0])
    return first.key_by(lambda r: r[0]).connect(second.key_by(lambda r: r[0]))


@pytest.mark.parametrize("keyed_later", [False, True])
@pytest.mark.parametrize("parallelism", [1, 3])
def test_keyed_co_process_shares_state_and_fires_timers_at_the_minimum_watermark(
    keyed_later: bool, parallelism: int
) -> None:
    """Timer a@100 sees input 2's a@50 only (1); b@150 sees b@140 (1); a@300 sees 50, 120, 300 (3); a@500 all 4.

    ``asked`` (written by input 1, read in the timer) is the key's input-1 count at end: timers at
    100/300 may fire before a@500 arrived, so it is checked for a key's last timer only.
    """
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    first = env.from_source(TestingSource(A), _monotonous())
    second = env.from_source(TestingSource(B), _monotonous())
    _count_before(env, first, second, keyed_later).process(CountBefore()).uid("co").add_sink(TestingSink(out))
    assert run_in_process(env, parallelism=parallelism).state == "FINISHED"
    got = sorted(out)
    assert [row[:3] for row in got] == [("a", 100, 1), ("a", 300, 3), ("a", 500, 4), ("b", 150, 1)]
    assert {row[4] for row in got} == {"event_time"}
    assert got[2][3] == 3 and got[3][3] == 1


def test_keyed_co_process_state_survives_a_crash_exactly() -> None:
    """An ABORT in input 1's source fails the attempt; the restore gives the failure-free answer."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    first = env.from_source(TestingSource([A[0], A[1], TestingSource.ABORT, A[2], A[3]]), _monotonous())
    second = env.from_source(TestingSource(B), _monotonous())
    _count_before(env, first, second, False).process(CountBefore()).uid("co").add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 1
    assert sorted(row[:3] for row in out) == [("a", 100, 1), ("a", 300, 3), ("a", 500, 4), ("b", 150, 1)]


def test_one_input_may_end_long_before_the_other() -> None:
    """Input 1 ends after one record; its channels then count as the maximum watermark, input 2 drives time."""
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    first = env.from_source(TestingSource([("a", 400)]), _monotonous())
    second = env.from_source(TestingSource(B), _monotonous())
    _count_before(env, first, second, False).process(CountBefore()).add_sink(TestingSink(out))
    run_in_process(env, parallelism=2)
    assert [row[:3] for row in out] == [("a", 400, 3)]


def test_two_input_graph_chains_each_tag_to_its_input() -> None:
    env = StreamExecutionEnvironment()
    first = env.from_collection([1])
    second = env.from_sequence(1, 5).map(lambda x: x)
    first.connect(second).map(Tag()).print()
    graph = build_job_graph(env.transformations, default_parallelism=3, max_parallelism=128)
    names = [v.name for v in graph.vertices]
    assert names[0] == "Collection Source -> Tag1" and names[1] == "Sequence Source -> Map -> Tag2"
    co = graph.vertices[2]
    assert co.head.name == "CoMap" and [e.index for e in co.inputs] == [0, 1]
    assert graph.vertices[0].parallelism == 1 and graph.vertices[1].parallelism == 3


def test_bad_connections_are_refused_with_the_fix() -> None:
    env = StreamExecutionEnvironment()
    a, b = env.from_collection([1]), env.from_collection([2])
    with pytest.raises(PipelineError, match="KeyedCoProcessFunction needs keyed inputs"):
        a.connect(b).process(CountBefore())
    with pytest.raises(PipelineError, match="only one of the two streams is keyed"):
        a.key_by(lambda x: x).connect(b).map(Tag())
    with pytest.raises(ConfigError, match="lacks map2"):
        a.connect(b).map(type("Half", (), {"map1": lambda self, v: v})())
    with pytest.raises(ConfigError, match="connect\\(\\) takes a DataStream or a BroadcastStream"):
        a.connect(42)
    with pytest.raises(PipelineError, match="same StreamExecutionEnvironment"):
        a.connect(StreamExecutionEnvironment().from_collection([3]))
    with pytest.raises(ConfigError, match="MapStateDescriptor"):
        b.broadcast(ListStateDescriptor("rules"))
    with pytest.raises(ConfigError, match="two descriptors of one name"):
        b.broadcast(MapStateDescriptor("r"), MapStateDescriptor("r"))


def test_state_keys_lists_every_key_on_both_backends(tmp_path: Path) -> None:
    """``KeyedStateBackend.keys`` (for ``apply_to_keyed_state``): the keys with a value, map state included."""
    from streamjob.worker.state.backend import KeyedBackendContext
    from streamjob.worker.state.factory import create_keyed_backend

    for kind in ("hashmap", "rocksdb"):
        ctx = KeyedBackendContext("op", 0, 1, 128, (0, 127), tmp_path / kind)
        backend = create_keyed_backend(kind, ctx)
        try:
            counts = backend.get_state(ValueStateDescriptor("count", int))
            rules = backend.get_state(MapStateDescriptor("rules", str, int))
            for key in ["a", ("b", 1), 7]:
                backend.set_current_key(key)
                counts.update(1)
            for key in ["a", "z"]:
                backend.set_current_key(key)
                rules.put("x", 1)
                rules.put("y", 2)
            assert sorted(map(repr, backend.keys(ValueStateDescriptor("count", int)))) == sorted(
                map(repr, ["a", ("b", 1), 7])
            ), kind
            assert sorted(backend.keys(MapStateDescriptor("rules", str, int))) == ["a", "z"], kind
        finally:
            backend.close()


class Remind(KeyedCoProcessFunction[Any, Any, Any, Any]):
    """Input 1 sets a processing-time reminder, input 2 cancels it; the timer reports what input 2 left."""

    def open(self, runtime_context: Any) -> None:
        self.note = runtime_context.get_state(ValueStateDescriptor("note", str))

    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service().register_processing_time_timer(value[1])

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        if value[1] == "cancel":
            ctx.timer_service().delete_processing_time_timer(1000)
        self.note.update(value[1])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect((ctx.get_current_key(), timestamp, self.note.value(), str(ctx.time_domain())))


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
def test_keyed_co_process_processing_time_timers_are_per_key_across_inputs(tmp_path: Path, backend: str) -> None:
    """On the operator: a and b set a timer at 1000 (input 1); input 2 notes "hi" on a and cancels b's."""
    from streamjob.worker.runtime.co_operators import CoProcessOperator
    from streamjob.worker.runtime.context import TaskInfo
    from streamjob.worker.runtime.operators import OperatorSetup

    env = StreamExecutionEnvironment()
    first, second = env.from_collection([("a", 0)]), env.from_collection([("a", "")])
    t = first.connect(second).key_by(lambda r: r[0], lambda r: r[0]).process(Remind()).transformation
    info = TaskInfo("j", "job", "co (1/1)", "co", 0, 1, 128, 0)
    op = CoProcessOperator(OperatorSetup(info, t, (0, 127), backend, False, tmp_path, None))
    op.open()
    try:
        batch = [(0, ("a", 1000)), (0, ("b", 1000)), (1, ("a", "hi")), (1, ("b", "cancel"))]
        assert op.process_batch(batch) == []
        assert op.next_timer() == 1000
        assert op.fire_timers(999) == []
        assert op.fire_timers(1000) == [("a", 1000, "hi", "processing_time")]
        assert op.next_timer() is None
    finally:
        op.close()
