"""A count-window and custom-trigger job with an exactly-once file sink, and the output a failure-free run gives.

Event ``i`` is ``(f"k{i % keys}", 10 * i, i)`` from one generator subtask, so each key's records
reach its window subtask in the same order in every run (the windows' contents depend on it).
Two branches, unioned into one ``FileSink``:

- ``count_window(5)`` per key, reduced to ``["count", key, sum of i]``: a key's records in groups of
  five (its last, partial group is never emitted);
- after a ``map`` (which keeps each record's timestamp), tumbling 1 s event-time windows per key with
  ``CountTrigger.of(3)`` and ``CountEvictor.of(2)``: every third record added to a window fires it with
  its last two records, ``["trig", key, start, [i, i]]``; the evictor's leftovers stay in the window;
  at the window's end (watermark) it is dropped unfired.

Args (``name=value``): ``out`` (FileSink URI), ``count``, ``keys``, ``rate``, ``rocksdb=1``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from streamjob.worker.api import (
    CountEvictor,
    CountTrigger,
    EmbeddedRocksDBStateBackend,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.api.file_sink import FileSink


def event(keys: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, int, int]:
        return (f"k{i % keys}", 10 * i, i)

    return make


def add(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, int, int]:
    return (a[0], b[1], a[2] + b[2])


class LastTwo(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect(["trig", key, context.window().start, [e[2] for e in elements]])


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    keys = int(opts.get("keys", "10"))
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda e: e[1])
    events = (
        env.from_generator(event(keys), int(opts.get("count", "3000")), float(opts.get("rate", "500")))
        .uid("events")
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(strategy)
        .uid("timestamps")
        .set_parallelism(1)
    )
    counts = (
        events.key_by(lambda e: e[0])
        .count_window(5)
        .reduce(add)
        .uid("count-windows")
        .map(lambda r: ["count", r[0], r[2]])
        .uid("count-rows")
    )
    triggered = (
        events.map(lambda e: (e[0], e[1], e[2]))  # a map keeps the timestamps (pairs through the network)
        .uid("copy")
        .set_parallelism(1)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .trigger(CountTrigger.of(3))
        .evictor(CountEvictor.of(2))
        .process(LastTwo())
        .uid("trigger-windows")
    )
    counts.union(triggered).add_sink(FileSink(opts["out"])).uid("sink")
    return env


def expected(count: int, keys: int) -> list[list[Any]]:
    """Every row of a failure-free run, sorted as ``rows`` sorts them."""
    make = event(keys)
    by_key: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for i in range(count):
        e = make(i)
        by_key[e[0]].append(e)
    out: list[list[Any]] = []
    for key, records in by_key.items():
        for g in range(len(records) // 5):
            out.append(["count", key, sum(r[2] for r in records[5 * g : 5 * g + 5])])
        windows: dict[int, tuple[int, list[int]]] = {}
        for _, ts, i in records:
            start = ts - ts % 1000
            seen, kept = windows.get(start, (0, []))
            seen, kept = seen + 1, [*kept, i]
            if seen == 3:
                kept, seen = kept[-2:], 0
                out.append(["trig", key, start, list(kept)])
            windows[start] = (seen, kept)
    return rows(out)


def rows(out: list[list[Any]]) -> list[list[Any]]:
    """The rows in a canonical order."""
    return sorted(out, key=repr)
