"""Watermark strategies and the valve (minimum over input channels, idle channels left out)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streamjob.worker.api.watermarks import MAX_WATERMARK, MIN_WATERMARK, IdlenessTracker, WatermarkStrategy
from streamjob.worker.errors import ConfigError
from streamjob.worker.runtime.watermarks import WatermarkValve

pytestmark = pytest.mark.unit


def test_bounded_out_of_orderness_trails_the_largest_timestamp_by_the_bound_plus_one() -> None:
    gen = WatermarkStrategy.for_bounded_out_of_orderness(200).create_generator()
    assert gen.current_watermark() == MIN_WATERMARK
    gen.on_event(1000)
    gen.on_event(900)  # out of order: does not move the watermark back
    assert gen.current_watermark() == 1000 - 200 - 1
    gen.on_event(1500)
    assert gen.current_watermark() == 1299


def test_monotonous_and_no_watermarks() -> None:
    mono = WatermarkStrategy.for_monotonous_timestamps().create_generator()
    mono.on_event(10)
    assert mono.current_watermark() == 9
    none = WatermarkStrategy.no_watermarks().create_generator()
    none.on_event(10)
    assert none.current_watermark() == MIN_WATERMARK


def test_timestamp_assigner_takes_a_function_of_the_record_or_of_record_and_timestamp() -> None:
    s = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])
    assert s.timestamp_of(("a", 42), None) == 42
    s2 = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, ts: ts + r)
    assert s2.timestamp_of(1, 41) == 42
    with pytest.raises(ConfigError, match="with_timestamp_assigner"):
        WatermarkStrategy.for_monotonous_timestamps().timestamp_of("x", None)


def test_bad_durations_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="max_out_of_orderness"):
        WatermarkStrategy.for_bounded_out_of_orderness(-1)
    with pytest.raises(ConfigError, match="idle_timeout"):
        WatermarkStrategy.no_watermarks().with_idleness("5s")
    assert WatermarkStrategy.for_bounded_out_of_orderness(timedelta(seconds=2)).bound_ms == 2000


def test_idleness_after_the_timeout_and_active_again_on_a_record() -> None:
    now = [0.0]
    gen = WatermarkStrategy.for_monotonous_timestamps().with_idleness(500).create_generator(lambda: now[0])
    assert isinstance(gen, IdlenessTracker)
    now[0] = 0.499
    assert not gen.is_idle()
    now[0] = 0.5
    assert gen.is_idle()
    gen.on_event(7)
    assert not gen.is_idle() and gen.current_watermark() == 6


def test_valve_emits_the_minimum_over_channels_only_when_it_grows() -> None:
    v = WatermarkValve(3)
    assert v.on_watermark(0, 10) is None  # channels 1 and 2 know nothing yet
    assert v.on_watermark(1, 5) is None
    assert v.on_watermark(2, 7) == 5
    assert v.on_watermark(1, 4) is None  # a channel never goes back
    assert v.on_watermark(1, 20) == 7
    assert v.on_watermark(2, 30) == 10
    assert v.current == 10


def test_valve_leaves_idle_channels_out_and_takes_the_max_when_all_are_idle() -> None:
    v = WatermarkValve(2)
    assert v.on_watermark(0, 100) is None
    assert v.on_status(1, idle=True) == 100  # channel 1 idle: channel 0 alone decides
    assert v.on_watermark(0, 150) == 150
    # channel 1 comes back behind the task's watermark: it must catch up before it counts
    assert v.on_status(1, idle=False) is None
    assert v.on_watermark(1, 120) is None
    assert v.on_watermark(0, 300) == 300  # channel 1 (120 < 150) is not aligned: left out
    assert v.on_watermark(1, 200) is None  # still behind the task's 300
    assert v.on_watermark(1, 310) is None  # aligned now: the minimum is 300, no growth
    assert v.on_watermark(0, 400) == 310  # and now channel 1 holds the task back
    v2 = WatermarkValve(2)
    v2.on_watermark(0, 10)
    v2.on_watermark(1, 40)
    assert v2.current == 10
    assert v2.on_status(0, idle=True) == 40
    assert v2.on_status(1, idle=True) is None and v2.idle


def test_valve_ended_channels_count_as_max() -> None:
    v = WatermarkValve(2)
    v.on_watermark(0, 50)
    assert v.on_end(1) == 50
    assert v.on_end(0) == MAX_WATERMARK


def test_watermark_events_cross_the_wire() -> None:
    from streamjob.worker.protocol.events import Watermark, WatermarkStatus
    from streamjob.worker.protocol.messages import decode_event, encode_event

    for event in (Watermark(123), Watermark(MAX_WATERMARK), Watermark(MIN_WATERMARK), WatermarkStatus(idle=True)):
        assert decode_event(encode_event(event)) == event


def test_event_time_windows_need_timestamps_and_say_where_to_assign_them() -> None:
    from streamjob.worker.api import StreamExecutionEnvironment, TumblingEventTimeWindows

    env = StreamExecutionEnvironment()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[1])
    with pytest.raises(ConfigError, match="assign_timestamps_and_watermarks"):
        env.from_collection([("a", 1)]).key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10))
    mapped = env.from_collection([("a", 1)]).assign_timestamps_and_watermarks(strategy).map(lambda r: r)
    mapped.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10))  # a map keeps the timestamps
    kept = env.from_collection([("a", 1)]).assign_timestamps_and_watermarks(strategy).filter(lambda r: True)
    kept.rebalance().key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10)).aggregate(_Count())
    with pytest.raises(ConfigError, match="lacks"):
        kept.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10)).aggregate(object())
    with pytest.raises(ConfigError, match="allowed_lateness"):
        kept.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(10)).allowed_lateness(-1)
    with pytest.raises(ConfigError, match="WatermarkStrategy"):
        env.from_collection([1]).assign_timestamps_and_watermarks(200)  # type: ignore[arg-type]


class _Count:
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: object, acc: int) -> int:
        return acc + 1

    def get_result(self, acc: int) -> int:
        return acc
