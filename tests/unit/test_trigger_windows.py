"""Triggers, evictors, global and count windows on real keyed backends, outputs derived by hand from Flink's docs.

Each test states the derivation next to the data: which window a record is in, what the trigger
answers to each record and timer, what the evictor keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.evictors import CountEvictor, DeltaEvictor, Evictor, TimeEvictor
from streamjob.worker.api.side_outputs import OutputTag
from streamjob.worker.api.triggers import (
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    NeverTrigger,
    PurgingTrigger,
    Trigger,
    TriggerResult,
)
from streamjob.worker.api.watermarks import MAX_WATERMARK
from streamjob.worker.api.windows import (
    GlobalWindows,
    ProcessWindowFunction,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
    WindowContext,
)
from streamjob.worker.errors import ConfigError
from streamjob.worker.runtime.event_windows import WindowAggregation
from streamjob.worker.runtime.trigger_windows import TriggerWindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from tests.unit.test_event_windows import backend_owns
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit


@pytest.fixture(params=["hashmap", "rocksdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Listed(ProcessWindowFunction[Any, Any, Any]):
    """(key, the values the window function saw)."""

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, [v for _, _, v in elements]))


def _sum(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, int, int]:
    return (a[0], max(a[1], b[1]), a[2] + b[2])


def core(
    backend: KeyedStateBackend,
    assigner: WindowAssigner,
    trigger: Trigger,
    evictor: Evictor | None = None,
    *,
    records: bool = False,
    lateness: int = 0,
    now: int = 0,
) -> TriggerWindowCore:
    """Records are ``(key, timestamp, value)``; ``reduce`` sums the values unless ``records`` (a process function)."""
    aggregation = WindowAggregation.of_records() if records else WindowAggregation.of_reduce(_sum)
    return TriggerWindowCore(
        backend,
        assigner,
        trigger,
        evictor,
        aggregation,
        Listed() if records else None,
        allowed_lateness_ms=lateness,
        now=lambda: now,
    )


def feed(c: TriggerWindowCore, records: list[tuple[str, int, int]], now: int = 0, timestamps: bool = True) -> None:
    c.process_batch(list(records), lambda r: r[0], (lambda r: r[1]) if timestamps else None, now)


def values(out: list[Any]) -> list[Any]:
    return [(r[0], r[2]) for r in out]


def test_tumbling_count_window_fires_every_n_records_and_never_the_partial_one(kind: str, tmp_path: Path) -> None:
    # count_window(3) = GlobalWindows + PurgingTrigger(CountTrigger(3)): a's 1,2,3 -> 6; 4,5,6 -> 15; 7 is
    # a partial window, never emitted, not even at the end of input. b's 10,20,30 -> 60.
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), PurgingTrigger.of(CountTrigger.of(3)))
    feed(c, [("a", 0, 1), ("a", 0, 2), ("b", 0, 10), ("a", 0, 3), ("a", 0, 4)], timestamps=False)
    assert values(c.take()[0]) == [("a", 6)]
    feed(c, [("b", 0, 20), ("a", 0, 5), ("a", 0, 6), ("b", 0, 30), ("a", 0, 7)], timestamps=False)
    assert values(c.take()[0]) == [("a", 15), ("b", 60)]
    c.advance_watermark(MAX_WATERMARK)
    assert c.take() == ([], [])


def test_sliding_count_window_keeps_the_last_size_records_every_slide(kind: str, tmp_path: Path) -> None:
    # count_window(3, 2) = GlobalWindows + CountEvictor(3) + CountTrigger(2): fires at the 2nd, 4th, 6th
    # record with the last 3 records: [1, 2], [2, 3, 4], [4, 5, 6]; 7 waits for the 8th.
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), CountTrigger.of(2), CountEvictor.of(3), records=True)
    feed(c, [("a", 0, v) for v in range(1, 8)], timestamps=False)
    assert c.take()[0] == [("a", [1, 2]), ("a", [2, 3, 4]), ("a", [4, 5, 6])]


def test_global_windows_without_a_trigger_never_fire(kind: str, tmp_path: Path) -> None:
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), NeverTrigger())
    feed(c, [("a", 5, 1), ("a", 6, 2)])
    c.advance_watermark(MAX_WATERMARK)
    assert c.take() == ([], [])


def test_a_count_trigger_replaces_the_event_time_firing_of_a_time_window(kind: str, tmp_path: Path) -> None:
    # Tumbling 10 with CountTrigger(2) (not purging): 1, 2 fire [0, 10) with 3; 3 adds to 6 but does not
    # fire; at watermark 9 the count trigger does not fire (CONTINUE) and the window is dropped (cleanup).
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(10), CountTrigger.of(2))
    feed(c, [("a", 1, 1), ("a", 2, 2), ("a", 3, 3)])
    assert values(c.take()[0]) == [("a", 3)]
    c.advance_watermark(9)
    assert c.take() == ([], [])
    assert c.contents.items() == [] and c.trigger_state.items() == []  # cleaned up with the trigger's count


@pytest.mark.parametrize("purging", [False, True])
def test_purging_fires_only_what_arrived_since_the_last_firing(kind: str, tmp_path: Path, purging: bool) -> None:
    # Tumbling 10, lateness 5: [0, 10) fires at watermark 9 with 1 + 2. A record of 4 arriving at watermark 9
    # is within the lateness: EventTimeTrigger fires at once. Purging, the window held only the 4; not
    # purging, it holds 1 + 2 + 4 = 7. At watermark 14 (9 + 5) the window is dropped; 8 then is late.
    trigger: Trigger = PurgingTrigger.of(EventTimeTrigger.create()) if purging else EventTimeTrigger.create()
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(10), trigger, lateness=5)
    feed(c, [("a", 1, 1), ("a", 2, 2)])
    c.advance_watermark(9)
    assert values(c.take()[0]) == [("a", 3)]
    feed(c, [("a", 3, 4)])
    assert values(c.take()[0]) == [("a", 4 if purging else 7)]
    c.advance_watermark(14)
    feed(c, [("a", 4, 8)])
    assert c.take() == ([], [("a", 4, 8)])


def test_continuous_event_time_trigger_fires_every_interval_and_at_the_end(kind: str, tmp_path: Path) -> None:
    # Tumbling 20 ([0, 20), max timestamp 19), ContinuousEventTimeTrigger(5): the first record (ts 1) sets
    # the first firing at 1 - 1 % 5 + 5 = 5. Watermark 6: fires 1 + 2 = 3 (next at 10). Record 4 at ts 12;
    # watermark 11: fires 7 (next 15). Watermark 19: fires at 15 (next min(20, 19) = 19) and at 19 (the
    # window's end), both with 7; then the window and the trigger's state are dropped.
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(20), ContinuousEventTimeTrigger.of(5))
    feed(c, [("a", 1, 1), ("a", 7, 2)])
    c.advance_watermark(4)
    assert c.take() == ([], [])
    c.advance_watermark(6)
    assert values(c.take()[0]) == [("a", 3)]
    feed(c, [("a", 12, 4)])
    c.advance_watermark(11)
    assert values(c.take()[0]) == [("a", 7)]
    c.advance_watermark(19)
    assert values(c.take()[0]) == [("a", 7), ("a", 7)]
    assert c.contents.items() == [] and c.trigger_state.items() == [] and c.timers.items() == []


def test_continuous_processing_time_trigger_fires_every_interval_of_the_clock(kind: str, tmp_path: Path) -> None:
    # Global window, ContinuousProcessingTimeTrigger(100): the first record at clock 1030 sets the first
    # firing at 1030 - 30 + 100 = 1100; each firing sets the next 100 later. Firing does not purge.
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), ContinuousProcessingTimeTrigger.of(100), now=1030)
    feed(c, [("a", 0, 1), ("a", 0, 2)], now=1030, timestamps=False)
    c.fire_processing_time(1099)
    assert c.take() == ([], [])
    c.fire_processing_time(1100)
    assert values(c.take()[0]) == [("a", 3)]
    feed(c, [("a", 0, 4)], now=1150, timestamps=False)
    c.fire_processing_time(1200)
    assert values(c.take()[0]) == [("a", 7)]
    assert c.backend.next_timer_time() == 1300


def test_processing_time_windows_take_a_count_trigger(kind: str, tmp_path: Path) -> None:
    # Tumbling processing-time 100 at clock 50 ([0, 100)); CountTrigger(2) fires at the 2nd record; at the
    # clock's 99 the window is dropped (cleanup), the 3rd record never fired.
    c = core(make_backend(kind, tmp_path), TumblingProcessingTimeWindows.of(100), CountTrigger.of(2), now=50)
    feed(c, [("a", 0, 1), ("a", 0, 2), ("a", 0, 5)], now=50, timestamps=False)
    assert values(c.take()[0]) == [("a", 3)]
    c.fire_processing_time(99)
    assert c.take() == ([], []) and c.contents.items() == []


def test_time_evictor_keeps_records_within_the_size_of_the_newest(kind: str, tmp_path: Path) -> None:
    # Tumbling 20, TimeEvictor(5): at the firing the newest timestamp is 12, cutoff 12 - 5 = 7: the records
    # at 1 and 3 are evicted (<= 7), those at 9 and 12 kept: 4 + 8.
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(20), EventTimeTrigger(), TimeEvictor.of(5))
    feed(c, [("a", 1, 1), ("a", 3, 2), ("a", 12, 8), ("a", 9, 4)])
    c.advance_watermark(19)
    assert values(c.take()[0]) == [("a", 12)]


def test_delta_evictor_removes_records_far_from_the_newest(kind: str, tmp_path: Path) -> None:
    # Global window, CountTrigger(4), DeltaEvictor(5, |a - b| of the values): the newest is 10; 1 and 4 are
    # 9 and 6 away (>= 5) and evicted, 8 (2 away) and 10 kept.
    evictor = DeltaEvictor.of(5, lambda a, b: abs(a[2] - b[2]))
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), CountTrigger.of(4), evictor, records=True)
    feed(c, [("a", 0, 1), ("a", 0, 4), ("a", 0, 8), ("a", 0, 10)], timestamps=False)
    assert c.take()[0] == [("a", [8, 10])]


def test_evicting_after_the_function_shows_it_every_record_first(kind: str, tmp_path: Path) -> None:
    # CountEvictor(1, do_evict_after) with CountTrigger(2): the function sees [1, 2], then the window keeps 2;
    # the next firing (2 more records) sees [2, 3, 4] and keeps 4.
    evictor = CountEvictor.of(1, do_evict_after=True)
    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), CountTrigger.of(2), evictor, records=True)
    feed(c, [("a", 0, v) for v in (1, 2, 3, 4)], timestamps=False)
    assert c.take()[0] == [("a", [1, 2]), ("a", [2, 3, 4])]


def test_custom_trigger_with_value_state_and_purge(kind: str, tmp_path: Path) -> None:
    """A user trigger: fires and purges once a window's values reach 10, keeping its total in partitioned state."""

    from streamjob.worker.api.state import ValueStateDescriptor

    class Threshold(Trigger):
        total = ValueStateDescriptor("total", default=0)

        def on_element(self, element: Any, timestamp: int, window: Any, ctx: Any) -> TriggerResult:
            state = ctx.get_partitioned_state(self.total)
            state.update(state.value() + element[2])
            if state.value() >= 10:
                state.clear()
                return TriggerResult.FIRE_AND_PURGE
            return TriggerResult.CONTINUE

    c = core(make_backend(kind, tmp_path), GlobalWindows.create(), Threshold())
    feed(c, [("a", 0, 4), ("b", 0, 9), ("a", 0, 5), ("a", 0, 1), ("b", 0, 2), ("a", 0, 3)], timestamps=False)
    assert values(c.take()[0]) == [("a", 10), ("b", 11)]


def test_count_windows_and_trigger_state_survive_a_rescale(kind: str, tmp_path: Path) -> None:
    # Two subtasks hold 2 records per key of a count_window(3); snapshotted and restored into one, the 3rd
    # record of every key fires its window with all three values: the counts moved with their key groups.
    storage = MemoryStorage()
    handles = []
    keys = [f"k{i}" for i in range(40)]
    trigger = PurgingTrigger.of(CountTrigger.of(3))
    for index in range(2):
        backend = make_backend(kind, tmp_path, parallelism=2, index=index)
        c = core(backend, GlobalWindows.create(), trigger)
        feed(c, [(k, 0, v) for k in keys if backend_owns(index, k) for v in (1, 2)], timestamps=False)
        assert c.take() == ([], [])
        handles += backend.snapshot()(storage.writer(1))
        backend.close()
    restored = make_backend(kind, tmp_path, uid="op")
    restored.restore(handles, storage.reader())
    c = core(restored, GlobalWindows.create(), trigger)
    feed(c, [(k, 0, 4) for k in keys], timestamps=False)
    assert sorted(values(c.take()[0])) == sorted((k, 7) for k in keys)


def test_bad_arguments_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"CountTrigger.of\(max_count\) must be an integer > 0"):
        CountTrigger.of(0)
    with pytest.raises(ConfigError, match=r"CountEvictor\.of"):
        CountEvictor.of(-1)
    with pytest.raises(ConfigError, match=r"TimeEvictor\.of"):
        TimeEvictor.of("5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"PurgingTrigger\.of takes a Trigger"):
        PurgingTrigger.of(3)  # type: ignore[arg-type]


class ToSide(ProcessWindowFunction[Any, Any, Any]):
    """Sums to the main output, and each window's size to the side output ``sizes``."""

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Any) -> None:
        values = [v for _, _, v in elements]
        out.collect((key, sum(values)))
        context.output(SIZES, (key, len(values)))


def test_a_window_function_emits_to_a_side_output_through_its_context(kind: str, tmp_path: Path) -> None:
    # count_window(2) with a process function: windows [1, 2] and [3, 4], each also sending its size to the
    # side buffer of "sizes" (the operator's, which the task drains onto that tag's edges).
    c = TriggerWindowCore(
        make_backend(kind, tmp_path),
        GlobalWindows.create(),
        PurgingTrigger.of(CountTrigger.of(2)),
        None,
        WindowAggregation.of_records(),
        ToSide(),
        now=lambda: 0,
    )
    c.side_outputs = {"sizes": []}
    feed(c, [("a", 0, v) for v in (1, 2, 3, 4)], timestamps=False)
    assert c.take()[0] == [("a", 3), ("a", 7)]
    assert c.side_outputs == {"sizes": [("a", 2), ("a", 2)]}


SIZES = OutputTag("sizes")
