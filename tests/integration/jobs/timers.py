"""Keyed processing-time timers that must survive a savepoint and a restore.

Each of ``keys`` keys gets its first event early; on its first event a key registers a timer
``delay_ms`` later and counts its events in keyed state; the timer emits ``[key, "fired", count]``
once. Every event is also emitted as ``[key, "event", n]``. Output goes to an exactly-once FileSink.
Args (``name=value``): ``out``, ``keys``, ``delay_ms``, ``count``, ``rate``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor
from streamjob.worker.api.file_sink import FileSink


class FireOnce(KeyedProcessFunction[str, tuple[str, int], list[Any]]):
    def __init__(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms

    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count", int, 0))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        n = self.count.value() + 1
        self.count.update(n)
        if n == 1:
            ctx.timer_service().register_processing_time_timer(
                ctx.timer_service().current_processing_time() + self.delay_ms
            )
        out.collect([value[0], "event", n])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect([ctx.get_current_key(), "fired", self.count.value()])


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    keys = int(opts.get("keys", "8"))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    env.from_generator(
        lambda i: (f"t{i % keys}", i), int(opts.get("count", "100000")), float(opts.get("rate", "200"))
    ).uid("ticks").key_by(lambda e: e[0]).process(FireOnce(int(opts.get("delay_ms", "6000")))).uid("timers").add_sink(
        FileSink(opts["out"])
    ).uid("sink")
    return env
