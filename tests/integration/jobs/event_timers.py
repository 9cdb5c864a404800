"""Event-time timers in a KeyedProcessFunction, fired by watermarks and by the end of input.

Events ``(key, ts)``; on each event the function registers an event-time timer at ``ts + 1000`` and,
for key ``b``'s event at 500, deletes it again. ``on_timer`` prints ``timer <key> <t> <domain> <n>``
(``n``: the key's events so far) and ``current_watermark()`` must have reached ``t``; each event
prints ``event <key> <ctx.timestamp()>``. Timestamps
are monotonous (watermark = largest timestamp - 1). Parallelism 1, bounded: the final maximum
watermark fires the timers event time never reached.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api import (
    KeyedProcessFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)

EVENTS = [("a", 0), ("b", 500), ("a", 1200), ("b", 1600), ("a", 5000)]


class Timers(KeyedProcessFunction[str, tuple[str, int], str]):
    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count", int, 0))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        self.count.update(self.count.value() + 1)
        out.collect(f"event {value[0]} {ctx.timestamp()}")
        ctx.timer_service().register_event_time_timer(value[1] + 1000)
        if value == ("b", 500):
            ctx.timer_service().delete_event_time_timer(1500)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        assert ctx.timer_service().current_watermark() >= timestamp
        out.collect(f"timer {ctx.get_current_key()} {timestamp} {ctx.time_domain()} {self.count.value()}")


def build(args: list[str]) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda e: e[1])
    env.from_collection(EVENTS).assign_timestamps_and_watermarks(strategy).key_by(lambda e: e[0]).process(Timers()).uid(
        "timers"
    ).print()
    return env
