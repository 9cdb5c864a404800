"""The event-time window benchmark job: per-key count and mean over tumbling 1 s (or sliding 10 s / 1 s) windows.

Pipeline: ``from_generator`` of ``('k%d' % (i % keys), ts(i), i % 100)`` with 100 events per
millisecond of event time, out of order by up to 150 ms → ``assign_timestamps_and_watermarks``
(bounded out-of-orderness 200 ms) → ``key_by`` → ``window`` → ``aggregate`` (count and sum in the
accumulator, the mean as the result: state is one accumulator per key and window) → a sink
counting results. 2M events are 20 s of event time: 200,000 window results at 10k keys (tumbling).

Timing starts when the sink opens (with the chain, as the events begin to flow), not at the first
result. The harness checks that the sinks saw ``--records`` records: the sink counts the events the windows
cover (the sum of the window counts, divided by the windows each event is in), which is exactly the
input when nothing is lost — every window fires, the bounded input ends with the maximum watermark.
Options: ``--sliding`` (10 s windows every 1 s), ``--backend rocksdb``, ``--verify`` (the sink adds
up each window's count squared, checked against ``bench/window_check.py``).

Run by the harness as ``streamjob run bench/jobs/event_windows.py -- --records N --keys K --out DIR``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from keyed_sum import ReportingSink  # the job's folder is on sys.path (streamjob's loader puts it there)

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    SlidingEventTimeWindows,
    StreamExecutionEnvironment,
    Time,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)

EVENTS_PER_MS = 100


class CountAndMean:
    """An AggregateFunction: ``[count, sum]`` accumulator, ``(count, mean)`` result."""

    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: tuple[str, int, int], acc: list[int]) -> list[int]:
        acc[0] += 1
        acc[1] += value[2]
        return acc

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0], a[1] + b[1]]

    def get_result(self, acc: list[int]) -> tuple[int, float]:
        return (acc[0], acc[1] / acc[0])


class WindowSink(ReportingSink):
    """Counts the events the window results cover (see the module docstring)."""

    overlap = 1
    covered = 0

    def open(self, runtime_context: Any) -> None:
        # Window results come in bursts when event time passes window ends (all of a short run's at the
        # end of input): the run is timed from the sink's start, when the events begin to flow, instead
        # of from the first result.
        super().open(runtime_context)
        self._first_batch(time.time())

    def invoke_batch(self, values: list[Any]) -> None:
        now = time.time()
        self._first_batch(now)
        self.covered += sum(v[0] for v in values)
        self.count = self.covered // self.overlap
        if self.verify:
            self.value_total += sum(v[0] * v[0] for v in values)  # checked by bench/window_check.py
        self._batch_done(now)


def _event(keys: int) -> Any:
    def event(i: int) -> tuple[str, int, int]:
        return ("k%d" % (i % keys), i // EVENTS_PER_MS - (i * 7919) % 150, i % 100)  # noqa: UP031

    return event


def build(args: list[str]) -> StreamExecutionEnvironment:
    """The pipeline; ``args`` are this module's command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="event_windows")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--out", required=True, help="directory for the sinks' reports")
    parser.add_argument("--sliding", action="store_true", help="10 s windows every 1 s instead of tumbling 1 s")
    parser.add_argument("--backend", choices=("hashmap", "rocksdb"), default="hashmap")
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: unthrottled)")
    parser.add_argument("--verify", action="store_true", help="the sink adds up the squared window counts")
    opts = parser.parse_args(args)
    env = StreamExecutionEnvironment.get_execution_environment()
    if opts.backend == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(200).with_timestamp_assigner(lambda e: e[1])
    if opts.sliding:
        assigner: Any = SlidingEventTimeWindows.of(Time.seconds(10), Time.seconds(1))
    else:
        assigner = TumblingEventTimeWindows.of(Time.seconds(1))
    sink = WindowSink(opts.out, 0.0, opts.verify)
    sink.overlap = 10 if opts.sliding else 1
    events = env.from_generator(_event(opts.keys), count=opts.records, records_per_second=opts.rate).uid("events")
    windows = (
        events.assign_timestamps_and_watermarks(strategy)
        .uid("timestamps")
        .key_by(lambda e: e[0])
        .window(assigner)
        .aggregate(CountAndMean())
        .uid("windows")
    )
    windows.add_sink(sink).uid("counts")
    return env
