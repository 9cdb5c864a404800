"""Broadcast state: ``stream.broadcast(descriptor)`` connected to a (keyed) data stream, exact outputs by hand.

The rules input and the data input interleave in no fixed order, so the keyed job decides with
event time, as a deterministic Flink job must: a data record at ``T`` is judged by an event-time
timer at ``T`` against the rule version in force at ``T`` (the broadcast state keeps versions by
timestamp); when the timer fires, the watermark of both inputs passed ``T``, so every rule up to
``T`` is in the broadcast state of every subtask. ``apply_to_keyed_state`` and the read-only data
side are checked on the operator itself, where the order of the two inputs is the test's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import (
    BroadcastProcessFunction,
    KeyedBroadcastProcessFunction,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from streamjob.worker.errors import PipelineError
from streamjob.worker.runtime.broadcast_operators import BroadcastOperator
from streamjob.worker.runtime.context import TaskInfo
from streamjob.worker.runtime.operators import OperatorSetup
from streamjob.worker.testing import JobError, TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

THRESHOLDS = MapStateDescriptor("thresholds", int, int)
# (timestamp, threshold): the threshold in force from that timestamp on
RULES = [(0, 50), (250, 10), (400, 90)]
# (key, timestamp, amount)
EVENTS = [("a", 100, 60), ("b", 120, 40), ("a", 260, 20), ("b", 300, 5), ("a", 420, 95), ("b", 500, 80)]
# by hand: a@100 60>50 alert 1; b@120 40<=50; a@260 20>10 alert 2; b@300 5<=10; a@420 95>90 alert 3; b@500 80<=90
EXPECTED = [
    ("a", 100, 60, 50, True, 1),
    ("a", 260, 20, 10, True, 2),
    ("a", 420, 95, 90, True, 3),
    ("b", 120, 40, 50, False, 0),
    ("b", 300, 5, 10, False, 0),
    ("b", 500, 80, 90, False, 0),
]


def _strategy(position: int) -> WatermarkStrategy:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[position])


class Alerts(KeyedBroadcastProcessFunction[Any, Any, Any, Any]):
    """Judges each event at its own timestamp by the threshold version in force then; counts alerts per key."""

    def open(self, runtime_context: Any) -> None:
        self.pending = runtime_context.get_map_state(MapStateDescriptor("pending", int, list))
        self.alerts = runtime_context.get_state(ValueStateDescriptor("alerts", int, 0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.pending.put(value[1], [*(self.pending.get(value[1]) or []), value[2]])
        ctx.timer_service().register_event_time_timer(value[1])

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(THRESHOLDS).put(value[0], value[1])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        versions = ctx.get_broadcast_state(THRESHOLDS)
        times = versions.keys()
        threshold = versions.get(max(t for t in times if t <= timestamp))
        for amount in self.pending.get(timestamp):
            alert = amount > threshold
            if alert:
                self.alerts.update(self.alerts.value() + 1)
            out.collect((ctx.get_current_key(), timestamp, amount, threshold, alert, self.alerts.value()))
        self.pending.remove(timestamp)


def _alerts_job(env: StreamExecutionEnvironment, rules: list[Any], events: list[Any], out: list[Any]) -> None:
    bcast = env.from_source(TestingSource(rules), _strategy(0)).uid("rules").broadcast(THRESHOLDS)
    data = env.from_source(TestingSource(events), _strategy(1)).uid("events").key_by(lambda e: e[0])
    data.connect(bcast).process(Alerts()).uid("alerts").add_sink(TestingSink(out)).uid("sink")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_keyed_broadcast_judges_each_event_by_the_rule_in_force_at_its_time(parallelism: int) -> None:
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    _alerts_job(env, RULES, EVENTS, out)
    assert run_in_process(env, parallelism=parallelism).state == "FINISHED"
    assert sorted(out) == EXPECTED


@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3)])
def test_broadcast_state_is_restored_to_every_subtask_at_any_parallelism(
    tmp_path: Path, before: int, after: int
) -> None:
    """The first run stops after two rules and two events; the second, rescaled, reads on.

    Its subtasks must all hold rules 0 and 250 (from subtask 0's one copy): without them the timers of
    b@300 and later would find no version <= their time (or the wrong one).
    """
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    rules = [*RULES[:2], TestingSource.EOF, *RULES[2:]]
    events = [*EVENTS[:2], TestingSource.EOF, *EVENTS[2:]]
    _alerts_job(env, rules, events, out)
    storage = tmp_path / "chk"
    assert run_in_process(env, parallelism=before, storage=storage).state == "FINISHED"
    assert sorted(out) == [row for row in EXPECTED if row[1] <= 120]
    run_in_process(env, parallelism=after, storage=storage, restore="latest")
    assert sorted(out) == EXPECTED


def test_keyed_broadcast_state_survives_a_crash_exactly() -> None:
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    _alerts_job(env, [*RULES[:2], TestingSource.ABORT, *RULES[2:]], EVENTS, out)
    assert run_in_process(env, parallelism=2).restarts == 1
    assert sorted(out) == EXPECTED


class Echo(BroadcastProcessFunction[Any, Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        if value == "write":
            ctx.get_broadcast_state(THRESHOLDS).put(1, 1)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(THRESHOLDS).put(value, value)
        out.collect((self.get_runtime_context().get_index_of_this_subtask(), value))


def test_every_subtask_gets_every_broadcast_record_and_the_data_side_cannot_write() -> None:
    env = StreamExecutionEnvironment()
    out: list[Any] = []
    data = env.from_sequence(1, 6)
    data.connect(env.from_collection([7, 8]).broadcast(THRESHOLDS)).process(Echo()).add_sink(TestingSink(out))
    run_in_process(env, parallelism=3)
    assert sorted(out) == [(i, v) for i in range(3) for v in (7, 8)]

    env = StreamExecutionEnvironment()
    env.from_collection(["write"]).connect(env.from_collection([7]).broadcast(THRESHOLDS)).process(Echo()).print()
    with pytest.raises(JobError, match="broadcast state 'thresholds' is read-only in process_element"):
        run_in_process(env, parallelism=1, max_restarts=0)


def test_the_wrong_function_kind_is_refused() -> None:
    env = StreamExecutionEnvironment()
    data, rules = env.from_collection([1]), env.from_collection([2]).broadcast(THRESHOLDS)
    with pytest.raises(PipelineError, match="takes a BroadcastProcessFunction"):
        data.connect(rules).process(Alerts())
    with pytest.raises(PipelineError, match="takes a KeyedBroadcastProcessFunction"):
        data.key_by(lambda x: x).connect(rules).process(Echo())


class Reset(KeyedBroadcastProcessFunction[Any, Any, Any, Any]):
    """Counts per key; a broadcast "report" emits every key's count, "reset" clears them all."""

    COUNT = ValueStateDescriptor("count", int, 0)

    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(self.COUNT)

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        if value == "report":
            ctx.apply_to_keyed_state(self.COUNT, lambda key, state: out.collect((key, state.value())))
        else:
            ctx.apply_to_keyed_state(self.COUNT, lambda key, state: state.clear())


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
def test_apply_to_keyed_state_visits_every_key_of_the_subtask(tmp_path: Path, backend: str) -> None:
    env = StreamExecutionEnvironment()
    stream = env.from_collection(["x"]).key_by(lambda r: r).connect(env.from_collection(["y"]).broadcast(THRESHOLDS))
    t = stream.process(Reset()).transformation
    info = TaskInfo("j", "job", "bcast (1/1)", "bcast", 0, 1, 128, 0)
    op = BroadcastOperator(OperatorSetup(info, t, (0, 127), backend, False, tmp_path, None))
    op.open()
    try:
        assert sorted(op.process_batch([(0, "a"), (0, "b"), (0, "a"), (1, "report")])) == [("a", 2), ("b", 1)]
        assert op.process_batch([(1, "reset"), (0, "b"), (1, "report")]) == [("b", 1)]
    finally:
        op.close()
