"""A keyed job whose sink may sleep per record: the backpressure metric's test job.

Generator → key_by → keyed count → sink, parallelism 2, so every source subtask writes to one local
and one remote channel. Args (``name=value``): ``sink_us`` (sleep per record in the sink, 0 = none),
``rate`` (records per second of the source, all subtasks together; 0 = unthrottled), ``buffer`` (records per batch).
"""

from __future__ import annotations

import time
from typing import Any

from streamjob.worker.api import RichMapFunction, SinkFunction, StreamExecutionEnvironment, ValueStateDescriptor


class Count(RichMapFunction[tuple[int, int], tuple[int, int]]):
    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count", int, 0))

    def map(self, value: tuple[int, int]) -> tuple[int, int]:
        n = self.count.value() + 1
        self.count.update(n)
        return value[0], n


class SleepingSink(SinkFunction):
    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s

    def invoke(self, value: tuple[int, int]) -> None:
        if self.sleep_s:
            time.sleep(self.sleep_s)


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    rate = float(opts.get("rate", "0")) or None
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.set_buffer_size(int(opts.get("buffer", "256")))
    env.from_generator(lambda i: (i % 100, i), None, rate).uid("gen").key_by(lambda r: r[0]).map(Count()).uid(
        "count"
    ).add_sink(SleepingSink(int(opts.get("sink_us", "0")) / 1e6)).uid("sink")
    return env
