"""Per-split watermarks in sources (``from_source(source, strategy, name)``), as Flink's source readers.

The in-process tests read a scripted source of two partitions, ``p0`` and ``p1``, one record per poll
in the script's order (as a Kafka reader interleaves its partitions); a partition is finished after its
last record. Records are ``(partition, timestamp)`` with monotonous watermarks, windows are 1 s tumbling
counts per partition. Expected outputs are derived by hand next to each script. The pure tests drive
``SplitWatermarks`` directly (restore and rescale by split id).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import (
    KeyedProcessFunction,
    OutputTag,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.api.file_source import FileSource
from streamjob.worker.api.functions import CheckpointListener
from streamjob.worker.api.sinks import SinkFunction
from streamjob.worker.api.sources import (
    READER_SPLIT,
    DataGeneratorSource,
    Source,
    SourceReader,
    SourceReaderContext,
)
from streamjob.worker.api.watermarks import MIN_WATERMARK
from streamjob.worker.errors import ConfigError
from streamjob.worker.runtime.split_watermarks import SplitWatermarks
from streamjob.worker.testing import InMemoryStorage, TestingAbort, TestingSink, run_in_process

pytestmark = pytest.mark.unit

MONOTONOUS = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])
LATE = OutputTag("late")


class Pause:
    """The script waits this long (processing time) before its next step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Until:
    """The script waits until ``condition()`` holds (e.g. a window fired) before its next step."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition


WAIT = "wait-for-a-checkpoint-here"  # the script waits until a checkpoint taken at this step completed
ABORT = "abort"  # the attempt fails here once (like a crashed worker); a restored reader skips it


class Script(Source, CheckpointListener):
    """Two (or more) partitions read in the script's order; the split state is the script position."""

    max_parallelism = 1

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.aborted = False
        self.wait_snapshots = 0
        self.waited = False

    def __deepcopy__(self, memo: dict[int, Any]) -> Script:
        return self  # one script per test: its abort and wait bookkeeping outlives the attempt

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        return ScriptReader(self, int(restored[0]) if restored else 0)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        # One checkpoint at a time: once two were taken at WAIT, any completion means one of them completed.
        if self.wait_snapshots >= 2:
            self.waited = True


class ScriptReader(SourceReader):
    def __init__(self, script: Script, position: int) -> None:
        self.script = script
        self.pos = position
        self.pause_started: float | None = None

    def poll_splits(self, max_records: int) -> list[tuple[Any, list[Any]]] | None:
        steps = self.script.steps
        while self.pos < len(steps):
            step = steps[self.pos]
            if isinstance(step, Pause):
                if self.pause_started is None:
                    self.pause_started = time.monotonic()
                if time.monotonic() - self.pause_started < step.seconds:
                    return []
                self.pause_started = None
            elif isinstance(step, Until):
                if not step.condition():
                    return []
            elif step == WAIT:
                if not self.script.waited:
                    return []
            elif step == ABORT:
                if not self.script.aborted:
                    self.script.aborted = True
                    self.pos += 1
                    raise TestingAbort("scripted crash")
            else:
                self.pos += 1
                return [(step[0], [step])]
            self.pos += 1
        return None

    def poll(self, max_records: int) -> list[Any] | None:
        runs = self.poll_splits(max_records)
        return None if runs is None else [r for _, records in runs for r in records]

    def active_splits(self) -> list[Any]:
        return sorted({s[0] for s in self.script.steps[self.pos :] if isinstance(s, tuple)})

    def snapshot(self) -> list[Any]:
        if self.pos < len(self.script.steps) and self.script.steps[self.pos] == WAIT:
            self.script.wait_snapshots += 1
        return [self.pos]

    def next_poll_delay_s(self) -> float:
        return 0.005


class Counted(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, len(list(elements))))


class Fired(SinkFunction):
    """Appends each window's result to ``seen`` as it fires (not at a commit, as ``TestingSink`` does)."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def __deepcopy__(self, memo: dict[int, Any]) -> Fired:
        return self

    def invoke(self, value: Any) -> None:
        self.seen.append(value)


def windowed(
    steps: list[Any], strategy: WatermarkStrategy, *, per_split: bool = True, fired: list[Any] | None = None
) -> tuple[Any, Any, Any]:
    """Runs the script into 1 s windows per partition; returns (windows, late records, the run's result).

    ``fired``: a list each window's result is appended to as it fires (a script's ``Until`` may watch it).
    """
    out: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    if per_split:
        events = env.from_source(Script(steps), strategy, "script").uid("src")
    else:
        events = env.from_source(Script(steps), "script").uid("src").assign_timestamps_and_watermarks(strategy)
    windows = (
        events.key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    windows.add_sink(TestingSink(out)).uid("out")
    if fired is not None:
        windows.add_sink(Fired(fired)).uid("fired")
    windows.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
    result = run_in_process(env, parallelism=1)
    return sorted(out), sorted(late), result


# p0 runs ahead of p1. Read in this order: p0@1000, p1@100, p0@5000, p1@600, p0@9000 (p0 finished), p1@1200,
# p1@4100, p1@8500.
FAST_AND_SLOW = [("p0", 1000), ("p1", 100), ("p0", 5000), ("p1", 600), ("p0", 9000), ("p1", 1200)]
FAST_AND_SLOW += [("p1", 4100), ("p1", 8500)]
ALL_WINDOWS = [("p0", 1000, 1), ("p0", 5000, 1), ("p0", 9000, 1)]
ALL_WINDOWS += [("p1", 0, 2), ("p1", 1000, 1), ("p1", 4000, 1), ("p1", 8000, 1)]


def test_a_fast_partition_does_not_make_the_slow_ones_records_late() -> None:
    # Per split: the source's watermark is min(p0, p1): MIN until p1's first record, then 99, 99, 599; when
    # p0 finishes it is released and p1 alone drives the watermark (1199, 4099, 8499). Nothing is late.
    windows, late, _ = windowed(FAST_AND_SLOW, MONOTONOUS)
    assert windows == ALL_WINDOWS
    assert late == []


def test_a_strategy_on_the_merged_output_makes_them_late_as_it_always_did() -> None:
    # assign_timestamps_and_watermarks after the source (one generator for both partitions): p0@1000 makes
    # the watermark 999, so p1@100 (window [0,1000) ends at 999) is late, and so is every later p1 record.
    windows, late, _ = windowed(FAST_AND_SLOW, MONOTONOUS, per_split=False)
    assert windows == [("p0", 1000, 1), ("p0", 5000, 1), ("p0", 9000, 1)]
    assert late == [("p1", 100), ("p1", 600), ("p1", 1200), ("p1", 4100), ("p1", 8500)]


# p1 speaks once, then is silent (not finished) while p0 goes on; after a pause far longer than the idle timeout
# (a loaded machine may stall the task for a few hundred ms after p1 spoke) p0@5000 comes, then, in a later poll,
# p1@1500 (the watermark is computed once per poll: in the same poll p1's record would make it active again).
SILENT_P1 = [("p1", 100), ("p0", 1000), ("p0", 3000), Pause(1.5), ("p0", 5000), Pause(0.3), ("p1", 1500)]


def test_an_idle_partition_no_longer_holds_the_watermark_back() -> None:
    # with_idleness(200): after the pause p1 is idle, so p0@5000 makes the watermark 4999 (p0 is not finished:
    # a finished split is released with its watermark); p1@1500 then falls in [1000,2000), whose end passed:
    # late (its return cannot move the watermark back). p1 speaks only once window [3000,4000) fired, i.e.
    # once the watermark passed 3999 without p1: a fixed pause there made the outcome depend on the machine.
    fired: list[Any] = []
    steps = [*SILENT_P1[:-2], Until(lambda: ("p0", 3000, 1) in fired), ("p1", 1500), ("p0", 9000)]
    windows, late, _ = windowed(steps, MONOTONOUS.with_idleness(200), fired=fired)
    assert windows == [("p0", 1000, 1), ("p0", 3000, 1), ("p0", 5000, 1), ("p0", 9000, 1), ("p1", 0, 1)]
    assert late == [("p1", 1500)]


def test_without_idleness_the_silent_partition_holds_it_and_nothing_is_late() -> None:
    windows, late, _ = windowed(SILENT_P1, MONOTONOUS)
    assert windows == [("p0", 1000, 1), ("p0", 3000, 1), ("p0", 5000, 1), ("p1", 0, 1), ("p1", 1000, 1)]
    assert late == []


class SeenWatermark(KeyedProcessFunction[Any, Any, Any]):
    """(record, the watermark this operator had when the record came): the source's after the previous record."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timer_service().current_watermark()))


def test_each_partitions_watermark_is_restored_from_the_checkpoint() -> None:
    # Before the crash: p0@1000, p1@100, p0@5000, p1@600 -> split watermarks p0 4999, p1 599 (output 599), in
    # the checkpoint taken at WAIT. The restored attempt starts its operators at MIN; then p0@6000 makes the
    # output min(5999, p1's restored 599) = 599 at once (without p1's stored watermark it would stay MIN until
    # p1 spoke): p0@7000 sees 599, p1@2000 sees 599; p1@2000 is p1's last record (p1 finished, released), so
    # p0@8000 sees p0's 6999.
    steps = [("p0", 1000), ("p1", 100), ("p0", 5000), ("p1", 600), WAIT, ABORT]
    steps += [("p0", 6000), ("p0", 7000), ("p1", 2000), ("p0", 8000)]
    seen: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(50)
    env.from_source(Script(steps), MONOTONOUS, "script").uid("src").key_by(lambda r: 0).process(SeenWatermark()).uid(
        "seen"
    ).add_sink(TestingSink(seen)).uid("out")
    result = run_in_process(env, parallelism=1)
    assert result.restarts == 1
    assert seen == [
        (("p0", 1000), MIN_WATERMARK),
        (("p1", 100), MIN_WATERMARK),  # p1 has no record yet: it holds the output at MIN
        (("p0", 5000), 99),
        (("p1", 600), 99),
        (("p0", 6000), MIN_WATERMARK),  # the restored attempt: the operator starts at MIN
        (("p0", 7000), 599),
        (("p1", 2000), 599),
        (("p0", 8000), 6999),
    ]


# -- SplitWatermarks alone --------------------------------------------------------------------------------


def test_the_output_is_the_minimum_over_active_splits_and_never_goes_back() -> None:
    marks = SplitWatermarks(WatermarkStrategy.for_bounded_out_of_orderness(10).with_timestamp_assigner(lambda r: r))
    marks.sync(["a", "b"])
    marks.on_records("a", [100, 300])
    assert marks.current() == MIN_WATERMARK  # b has seen nothing
    marks.on_records("b", [50])
    assert marks.current() == 39  # min(300 - 10 - 1, 50 - 10 - 1)
    marks.sync(["a"])  # b finished: released
    assert marks.current() == 289
    marks.sync(["a", "c"])  # a new split starts at MIN: the output holds, never moves back
    assert marks.current() == 289
    marks.on_records("c", [1000])
    assert marks.current() == 289
    marks.on_records("a", [2000])
    assert marks.current() == 989


def test_split_watermarks_are_restored_by_split_id_at_any_parallelism() -> None:
    # Two old subtasks stored (a: 500, b: 90) and (c: 70, the pseudo split of a reader without ids: 40);
    # union state: every new reader sees all. A reader now owning b and c starts at min(90, 70) = 70; the
    # old readers' pseudo splits (40 here, 60 from another) restore to their minimum.
    stored = [["a", 500], [["t", 1], 90], ["c", 70], [READER_SPLIT, 40], [READER_SPLIT, 60]]
    strategy = MONOTONOUS
    marks = SplitWatermarks(strategy, stored)
    marks.sync([("t", 1), "c"])
    assert marks.current() == 70
    assert sorted(marks.snapshot(), key=repr) == sorted([(("t", 1), 90), ("c", 70)], key=repr)
    marks.on_records("c", [("c", 200)])
    assert marks.current() == 90
    whole = SplitWatermarks(strategy, stored)
    whole.sync([READER_SPLIT])
    assert whole.current() == 40


def test_every_split_idle_makes_the_source_idle_and_a_returning_split_does_not_move_it_back() -> None:
    now = [0.0]
    marks = SplitWatermarks(MONOTONOUS.with_idleness(100), clock=lambda: now[0])
    marks.sync(["a", "b"])
    marks.on_records("a", [("a", 1000)])
    marks.on_records("b", [("b", 200)])
    assert marks.current() == 199 and not marks.is_idle()
    now[0] = 0.05
    marks.on_records("a", [("a", 3000)])
    now[0] = 0.12  # b silent for 120 ms: idle
    assert marks.current() == 2999 and not marks.is_idle()
    now[0] = 0.2
    assert marks.is_idle()  # a silent for 150 ms too
    marks.on_records("b", [("b", 400)])
    assert not marks.is_idle() and marks.current() == 2999


HALF = 1000
_FAIL_AT: list[int | None] = [None]


def numbered(i: int) -> int:
    """The generator's record i; fails the run once it reaches ``_FAIL_AT`` (the job then stops, storage kept)."""
    if i == _FAIL_AT[0]:
        _FAIL_AT[0] = None
        raise RuntimeError("stop the first run here")
    return i


def test_split_watermarks_follow_their_splits_through_a_rescale() -> None:
    # A generator of 2 * HALF records at p=2: subtask 0 reads the split [0, HALF), subtask 1 [HALF, 2 * HALF);
    # record i has the timestamp (i % HALF) * 10, so both splits cover the same event time, each in order.
    # The first run fails mid-way; the second restores its latest checkpoint at p=1: one reader, two splits,
    # read one after the other. Per split, the split not read yet holds the watermark at its stored floor,
    # so none of its records is late; windows of 1 s count 100 timestamps of each split: 200 each, 10 windows.
    # (One watermark for the reader would pass the second split's records while reading the first.)
    storage = InMemoryStorage()
    windows: list[Any] = []
    late: list[Any] = []

    def build(parallelism: int) -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.enable_checkpointing(50)
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda i: (i % HALF) * 10)
        counted = (
            env.from_source(DataGeneratorSource(numbered, 2 * HALF, records_per_second=2000), strategy, "gen")
            .uid("gen")
            .set_parallelism(parallelism)
            .key_by(lambda i: "k")
            .window(TumblingEventTimeWindows.of(1000))
            .side_output_late_data(LATE)
            .process(Counted())
            .uid("windows")
        )
        counted.add_sink(TestingSink(windows)).uid("out")
        counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
        return env

    _FAIL_AT[0] = 700
    first = run_in_process(build(2), parallelism=2, storage=storage, max_restarts=0, raise_on_failure=False)
    assert first.checkpoints >= 1 and _FAIL_AT[0] is None
    run_in_process(build(1), parallelism=1, storage=storage, restore="latest")
    assert sorted(windows) == [("k", start, 200) for start in range(0, HALF * 10, 1000)]
    assert late == []


def test_each_file_has_its_own_watermark(tmp_path: Path) -> None:
    # Two files read by one subtask, one after the other (in key order): a.txt runs to 9 s, b.txt starts at
    # 0.1 s. Per file, b.txt (not read yet) holds the watermark back while a.txt is read, so none of its
    # lines is late; one watermark over both files would pass b.txt's lines while reading a.txt.
    (tmp_path / "a.txt").write_text("a,1000\na,5000\na,9000\n")
    (tmp_path / "b.txt").write_text("b,100\nb,600\nb,4100\n")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda s: int(s.split(",")[1]))
    windows: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    counted = (
        env.from_source(FileSource(tmp_path.as_uri()), strategy, "files")
        .uid("files")
        .set_parallelism(1)
        .key_by(lambda s: s.split(",")[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    counted.add_sink(TestingSink(windows)).uid("out")
    counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
    run_in_process(env, parallelism=1)
    assert sorted(windows) == [("a", 1000, 1), ("a", 5000, 1), ("a", 9000, 1), ("b", 0, 2), ("b", 4000, 1)]
    assert late == []


def test_from_source_refuses_a_strategy_it_cannot_read_timestamps_with() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    with pytest.raises(ConfigError, match="with_timestamp_assigner"):
        env.from_source(Script([]), WatermarkStrategy.for_monotonous_timestamps(), "script")
    with pytest.raises(ConfigError, match="must be a WatermarkStrategy"):
        env.from_source(Script([]), "script", watermark_strategy="200ms")  # type: ignore[arg-type]
