"""A job whose map function registers one metric of each kind: the user metrics' test job.

Generator (value ``i``) → ``Measure`` (counter ``seen``, gauge ``last_value``, meter ``events``,
histogram ``values``, and a counter ``seen`` in the group ``parity=even|odd``) → discarding sink,
parallelism 2, unbounded at ``rate`` records per second.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api import DiscardingSink, RichMapFunction, StreamExecutionEnvironment


class Measure(RichMapFunction[int, int]):
    def open(self, runtime_context: Any) -> None:
        group = runtime_context.get_metric_group()
        self.seen = group.counter("seen")
        self.last = 0
        group.gauge("last_value", lambda: self.last)
        self.events = group.meter("events")
        self.values = group.histogram("values")
        self.by_parity = {p: group.add_group("parity", p).counter("seen") for p in ("even", "odd")}

    def map(self, value: int) -> int:
        self.seen.inc()
        self.last = value
        self.events.mark_event()
        self.values.update(value % 100)
        self.by_parity["odd" if value % 2 else "even"].inc()
        return value


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.from_generator(lambda i: i, None, float(opts.get("rate", "200"))).uid("gen").map(Measure()).uid(
        "measure"
    ).add_sink(DiscardingSink()).uid("sink")
    return env
