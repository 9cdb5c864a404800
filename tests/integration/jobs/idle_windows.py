"""Two sources into one event-time window: one with events, one that stays open and never emits.

The silent source holds the window operator's watermark (the minimum over its inputs) at its start
unless the strategy marks it idle (``idle=1``: ``with_idleness(300)``). The events source ends with
the maximum watermark, so with idleness every window (``[k, start, count]`` printed) fires while the
job still runs; without it none does. The job never finishes (the silent source is unbounded).

Args (``name=value``): ``idle=1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamjob.worker.api import (
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext


class _Silent(SourceReader):
    def poll(self, max_records: int) -> list[Any] | None:
        return []

    def snapshot(self) -> list[Any]:
        return []

    def next_poll_delay_s(self) -> float:
        return 0.05


class SilentSource(Source):
    bounded = False
    max_parallelism = 1

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        return _Silent()


class Count(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect(f"window {key} {context.window().start} {len(list(elements))}")


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(200)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda e: e[1])
    if opts.get("idle") == "1":
        strategy = strategy.with_idleness(300)
    events = env.from_collection([("k", 100 * i) for i in range(30)]).uid("events")
    silent = env.from_source(SilentSource(), strategy, "Silent").uid("silent")
    events.assign_timestamps_and_watermarks(strategy).uid("timestamps").union(silent).key_by(lambda e: e[0]).window(
        TumblingEventTimeWindows.of(1000)
    ).process(Count()).uid("windows").print()
    return env
