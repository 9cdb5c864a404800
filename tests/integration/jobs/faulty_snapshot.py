"""A job whose sink misbehaves at checkpoints: its snapshot is slow (``mode=sleep``) or raises (``mode=raise``).

Args (``name=value``): ``mode``, ``failures`` (how many snapshots misbehave, -1 = all), ``sleep_ms``,
``timeout`` (checkpoint timeout, ms), ``tolerable`` (tolerable checkpoint failures), ``count``, ``rate``.
The restart strategy is none, so a job failure ends the run with exit code 5.
"""

from __future__ import annotations

import time
from typing import Any

from streamjob.worker.api import (
    CheckpointedFunction,
    RestartStrategies,
    SinkFunction,
    StreamExecutionEnvironment,
)


class MisbehavingSink(SinkFunction, CheckpointedFunction):
    def __init__(self, mode: str, failures: int, sleep_ms: int) -> None:
        self.mode = mode
        self.failures = failures
        self.sleep_s = sleep_ms / 1000
        self.snapshots = 0

    def invoke(self, value: Any) -> None:
        return None

    def initialize_state(self, context: Any) -> None:
        return None

    def snapshot_state(self, context: Any) -> None:
        self.snapshots += 1
        if self.failures >= 0 and self.snapshots > self.failures:
            return
        if self.mode == "sleep":
            time.sleep(self.sleep_s)
        else:
            raise RuntimeError(f"injected snapshot failure {self.snapshots}")


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.enable_checkpointing(int(opts.get("interval", "100")))
    config = env.get_checkpoint_config()
    config.set_checkpoint_timeout(int(opts.get("timeout", "300")))
    config.set_tolerable_checkpoint_failure_number(int(opts.get("tolerable", "0")))
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.from_generator(lambda i: i, int(opts.get("count", "100000")), float(opts.get("rate", "500"))).uid(
        "numbers"
    ).add_sink(
        MisbehavingSink(opts.get("mode", "sleep"), int(opts.get("failures", "-1")), int(opts.get("sleep_ms", "1500")))
    ).uid("sink")
    return env
