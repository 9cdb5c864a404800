"""An event-time windowed job with an exactly-once file sink, and the output a failure-free run gives.

Event ``i`` is ``(f"k{i % keys}", ts(i), i % 100)`` with ``ts(i) = 10 * i - (i * 7919) % 150``:
out of order by up to 150 ms, inside the strategy's 200 ms bound, so no record is ever late
however the input is cut into batches or split over subtasks. Windows: tumbling 1 s event-time
windows per key with an incremental ``aggregate`` (count and sum) and a ``ProcessWindowFunction``
that tags each result with its key and window start. The bounded input ends with the maximum
watermark, so the last windows fire before the job finishes (``expected``).

Args (``name=value``): ``out`` (FileSink URI), ``count``, ``keys``, ``rate``, ``rocksdb=1``,
``sliding=1`` (10 s windows every 1 s instead).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    StreamExecutionEnvironment,
    Time,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.api.file_sink import FileSink


def ts(i: int) -> int:
    return 10 * i - (i * 7919) % 150


def event(keys: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, int, int]:
        return (f"k{i % keys}", ts(i), i % 100)

    return make


class CountSum:
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: tuple[str, int, int], acc: list[int]) -> list[int]:
        return [acc[0] + 1, acc[1] + value[2]]

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0], a[1] + b[1]]

    def get_result(self, acc: list[int]) -> list[int]:
        return acc


class Tag(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        for count, total in elements:
            out.collect([key, context.window().start, count, total])


def assigner(sliding: bool) -> Any:
    return (
        SlidingEventTimeWindows.of(Time.seconds(10), Time.seconds(1)) if sliding else TumblingEventTimeWindows.of(1000)
    )


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    keys = int(opts.get("keys", "10"))
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(200).with_timestamp_assigner(lambda e: e[1])
    stream = env.from_generator(event(keys), int(opts.get("count", "3000")), float(opts.get("rate", "500")))
    stream.uid("events").assign_timestamps_and_watermarks(strategy).uid("timestamps").key_by(lambda e: e[0]).window(
        assigner(opts.get("sliding") == "1")
    ).aggregate(CountSum(), Tag()).uid("windows").add_sink(FileSink(opts["out"])).uid("sink")
    return env


def expected(count: int, keys: int, sliding: bool = False) -> list[list[Any]]:
    """Every window result of a failure-free run, sorted."""
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    windows = assigner(sliding)
    make = event(keys)
    for i in range(count):
        key, t, v = make(i)
        for w in windows.assign_windows(t):
            a = acc[(key, w.start)]
            a[0] += 1
            a[1] += v
    return sorted([key, start, c, s] for (key, start), (c, s) in acc.items())
