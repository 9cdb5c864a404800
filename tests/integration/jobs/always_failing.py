"""A job that fails every attempt (its map raises after a few records) under a generous restart strategy.

Args (``name=value``): ``delay_ms`` (restart delay, default 2000), ``after`` (records before the
failure, default 50). Used to check that cancelling (SIGTERM, Ctrl-C, ``POST /cancel``) ends the run
between attempts instead of starting the next one.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api import MapFunction, RestartStrategies, StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink


class FailAfter(MapFunction):
    def __init__(self, after: int) -> None:
        self.after = after
        self.seen = 0

    def map(self, value: Any) -> Any:
        self.seen += 1
        if self.seen > self.after:
            raise RuntimeError(f"injected failure after {self.after} records")
        return value


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(200)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(1000, int(opts.get("delay_ms", "2000"))))
    env.from_generator(lambda i: i, 1_000_000, 1000.0).uid("numbers").map(FailAfter(int(opts.get("after", "50")))).uid(
        "fail"
    ).add_sink(DiscardingSink()).uid("sink")
    return env
