"""A p=1 job in two slot sharing groups whose records say which process ran each step.

``streamjob run slot_groups.py -- out=URI count=N``: numbers → map tagging ``(key, i, pid)`` (group
"default") → key_by → a reduce in group "keyed" that keeps a per-key count and emits ``(key, i,
map pid, reduce pid, count)`` → an exactly-once FileSink (inherits "keyed"). The placement test
checks that the map and the reduce ran in different slot processes and that every number came
out exactly once with the right per-key counts.
"""

from __future__ import annotations

import os
from typing import Any

from streamjob.worker.api import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor
from streamjob.worker.api.file_sink import FileSink

KEYS = 5


def tag(i: int) -> tuple[int, int, int]:
    return (i % KEYS, i, os.getpid())


class CountPerKey(KeyedProcessFunction[int, tuple[int, int, int], tuple[int, int, int, int, int]]):
    """Counts per key in ValueState; emits the record with this process's pid and the count."""

    def open(self, runtime_context: Any) -> None:
        self.seen = runtime_context.get_state(ValueStateDescriptor("seen", int, 0))

    def process_element(self, value: tuple[int, int, int], ctx: Any, out: Any) -> None:
        count = (self.seen.value() or 0) + 1
        self.seen.update(count)
        out.collect((value[0], value[1], value[2], os.getpid(), count))


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(a.partition("=")[::2] for a in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(200)
    numbers = env.from_collection(list(range(int(opts.get("count", "1000"))))).uid("numbers")
    tagged = numbers.map(tag).uid("tag")
    counted = tagged.key_by(lambda r: r[0]).process(CountPerKey()).uid("count").slot_sharing_group("keyed")
    counted.add_sink(FileSink(opts["out"])).uid("sink")
    return env
