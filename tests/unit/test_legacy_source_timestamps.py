"""Push-style sources with event time: ``collect_with_timestamp`` and ``emit_watermark`` (Flink's SourceContext).

A ``SourceFunction`` whose code calls them gives its records their timestamps: ``ctx.timestamp()``
downstream, event-time windows without an assigner, and its watermarks in the stream at the point it
emitted them (a record after a watermark it is behind is late, as in Flink). Expected outputs are derived
by hand; the exactly-once test crashes a chained operator while the source's buffer holds records and
watermarks, so the barrier's drain path carries them too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

from streamjob.worker.api import (
    CheckpointedFunction,
    ListStateDescriptor,
    OutputTag,
    ProcessFunction,
    ProcessWindowFunction,
    RichParallelSourceFunction,
    RichSourceFunction,
    SourceFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
)
from streamjob.worker.api.sources import emits_timestamps
from streamjob.worker.errors import ConfigError
from streamjob.worker.testing import TestingSink, run_in_process

pytestmark = pytest.mark.unit

LATE = OutputTag("late")


class Readings(SourceFunction):
    """a@100, a@1500, watermark 1999, a@500 (behind it), b@2500, then c without a timestamp."""

    def run(self, ctx: Any) -> None:
        with ctx.get_checkpoint_lock():
            ctx.collect_with_timestamp(("a", 1), 100)
            ctx.collect_with_timestamp(("a", 2), 1500)
            ctx.emit_watermark(1999)
            ctx.collect_with_timestamp(("a", 3), 500)
            ctx.collect_with_timestamp(("b", 4), 2500)
            ctx.collect(("c", 5))

    def cancel(self) -> None:
        pass


class WithTimestamp(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))


class Counted(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, len(list(elements))))


def test_timestamps_and_watermarks_of_a_push_source_reach_process_functions_and_windows() -> None:
    # Windows of 1 s by key, no assigner: a@100 -> a [0,1000), a@1500 -> a [1000,2000); the watermark 1999
    # fires both; a@500 then falls in [0,1000), past its end: late. b@2500 -> b [2000,3000) at the end.
    # c has no timestamp: ctx.timestamp() is None (and the filter keeps it out of the windows).
    stamps: list[Any] = []
    windows: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    readings = env.add_source(Readings()).uid("readings")
    readings.process(WithTimestamp()).uid("stamps").add_sink(TestingSink(stamps)).uid("stamps-out")
    counted = (
        readings.filter(lambda r: r[0] != "c")
        .uid("timed")
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    counted.add_sink(TestingSink(windows)).uid("windows-out")
    counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late-out")
    run_in_process(env, parallelism=2)
    assert sorted(stamps, key=repr) == sorted(
        [(("a", 1), 100), (("a", 2), 1500), (("a", 3), 500), (("b", 4), 2500), (("c", 5), None)], key=repr
    )
    assert sorted(windows) == [("a", 0, 1), ("a", 1000, 1), ("b", 2000, 1)]
    assert late == [("a", 3)]


N = 30_000
_CRASHED = threading.Event()


class PacedTimestamps(RichSourceFunction, CheckpointedFunction):
    """Emits i with timestamp i for i < N, 20 per lock hold, and the watermark i - 1 before every 1000th."""

    def __init__(self) -> None:
        self.running = True
        self.next = 0

    def initialize_state(self, context: Any) -> None:
        self.state = context.get_operator_state_store().get_list_state(ListStateDescriptor("position"))
        restored = list(self.state.get())
        self.next = restored[0] if restored else 0

    def snapshot_state(self, context: Any) -> None:
        self.state.update([self.next])

    def run(self, ctx: Any) -> None:
        while self.running and self.next < N:
            with ctx.get_checkpoint_lock():
                for _ in range(20):
                    if self.next >= N:
                        break
                    if self.next % 1000 == 0:
                        ctx.emit_watermark(self.next - 1)
                    ctx.collect_with_timestamp(self.next, self.next)
                    self.next += 1

    def cancel(self) -> None:
        self.running = False


def crash_once(value: int) -> int:
    """Crashes the attempt once, mid-stream (the source's buffer then holds records and watermarks)."""
    if value == N // 2 and not _CRASHED.is_set():
        _CRASHED.set()
        raise RuntimeError("crash between two checkpoints")
    return value


class Stamped(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))


def test_timestamps_and_watermarks_survive_the_barrier_drain_path_and_a_crash_exactly_once() -> None:
    # Every i reaches the chained sink once with its timestamp i. Windows of 1 s by i % 3 count the i in
    # [1000w, 1000w + 1000) with that remainder: none is late (the watermarks trail the records), so the
    # counts are exact: 334 or 333 per key and second.
    _CRASHED.clear()
    stamped: list[Any] = []
    windows: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(50)
    # One chain (source, map, process, sink: the drained records run through all of them before their snapshots)
    # and a second source of the same records into windows; the crash restarts both.
    source = env.add_source(PacedTimestamps()).uid("source")
    source.map(crash_once).uid("crash").process(Stamped()).uid("stamped").add_sink(TestingSink(stamped)).uid("sink")
    counted = (
        env.add_source(PacedTimestamps())
        .uid("windowed-source")
        .key_by(lambda i: i % 3)
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    counted.add_sink(TestingSink(windows)).uid("windows-out")
    counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late-out")
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # the source thread runs between the task's steps: its buffer is rarely empty
    try:
        result = run_in_process(env, parallelism=1)
    finally:
        sys.setswitchinterval(switch)
    assert result.restarts == 1
    assert sorted(stamped) == [(i, i) for i in range(N)]
    expected = [
        (k, start, len(range(start + (k - start) % 3, start + 1000, 3)))  # the i = k (mod 3) in [start, start + 1000)
        for k in range(3)
        for start in range(0, N, 1000)
    ]
    assert sorted(windows) == expected
    assert late == []


# -- finding out whether a source emits timestamps -----------------------------------------------------------


class Plain(SourceFunction):
    def run(self, ctx: Any) -> None:
        ctx.collect(1)

    def cancel(self) -> None:
        pass


class ThroughHelper(SourceFunction):
    def run(self, ctx: Any) -> None:
        def emit(value: int) -> None:
            ctx.collect_with_timestamp(value, value)

        emit(1)

    def cancel(self) -> None:
        pass


class Declared(Plain):
    emits_timestamps = True


class Inherited(Readings):
    pass


def test_a_source_emits_timestamps_when_its_code_calls_them_or_it_says_so() -> None:
    assert emits_timestamps(Readings()) and emits_timestamps(ThroughHelper()) and emits_timestamps(Inherited())
    assert emits_timestamps(Declared())
    assert not emits_timestamps(Plain())
    env = StreamExecutionEnvironment.get_execution_environment()
    env.add_source(Readings()).key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(1000))  # no assigner needed
    with pytest.raises(ConfigError, match="needs event timestamps"):
        env.add_source(Plain()).key_by(lambda r: r).window(TumblingEventTimeWindows.of(1000))
    plain = StreamExecutionEnvironment.get_execution_environment()
    plain.add_source(Plain()).map(lambda v: v).add_sink(TestingSink([]))
    assert not any("stamp" in t.options or "stamped_source" in t.options for t in plain.transformations)


_SEEN: list[Any] = []  # the windows committed so far (module-level: the source's copies read the same list)


class IdleOrNot(RichParallelSourceFunction):
    """Subtask 0: a@100, watermark 100, then idle until b's [1000,2000) window came out, then a@2000.

    Subtask 1: b@1000, b@1500, b@5000, watermark 4999, end.
    """

    def run(self, ctx: Any) -> None:
        if self.get_runtime_context().get_index_of_this_subtask() == 1:
            with ctx.get_checkpoint_lock():
                for ts in (1000, 1500, 5000):
                    ctx.collect_with_timestamp(("b", ts), ts)
                ctx.emit_watermark(4999)
            return
        with ctx.get_checkpoint_lock():
            ctx.collect_with_timestamp(("a", 100), 100)
            ctx.emit_watermark(100)
            ctx.mark_as_temporarily_idle()
        deadline = time.monotonic() + 15
        while ("b", 1000, 2) not in _SEEN and time.monotonic() < deadline:
            time.sleep(0.01)
        with ctx.get_checkpoint_lock():
            ctx.collect_with_timestamp(("a", 2000), 2000)

    def cancel(self) -> None:
        pass


def test_a_source_marked_idle_no_longer_holds_the_watermark_back() -> None:
    # Subtask 0 stays at watermark 100 but says it is idle: the windows follow subtask 1 alone, so b's
    # [1000,2000) fires (at 4999) while subtask 0 waits for it; its a@2000 then comes behind the windows'
    # watermark: late. Without the idle mark nothing of b would fire before a@2000 and it would not be late.
    _SEEN.clear()
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(50)
    counted = (
        env.add_source(IdleOrNot())
        .uid("src")
        .set_parallelism(2)
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    counted.add_sink(TestingSink(_SEEN)).uid("out")
    counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
    run_in_process(env, parallelism=2)
    assert sorted(_SEEN) == [("a", 0, 1), ("b", 1000, 2), ("b", 5000, 1)]
    assert late == [("a", 2000)]


class Untimed(SourceFunction):
    def run(self, ctx: Any) -> None:
        ctx.collect_with_timestamp(("a", 1), 100)
        ctx.collect(("a", 2))

    def cancel(self) -> None:
        pass


def test_an_event_time_window_refuses_a_record_without_a_timestamp_with_the_fix() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.add_source(Untimed()).uid("src").key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(1000)).process(
        Counted()
    ).uid("windows").add_sink(TestingSink([])).uid("out")
    result = run_in_process(env, parallelism=1, max_restarts=0, raise_on_failure=False)
    assert result.state == "FAILED"
    assert "without a timestamp" in result.failures[-1] and "collect_with_timestamp" in result.failures[-1]
