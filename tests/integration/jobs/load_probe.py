"""A job whose loading takes a while and is recorded: when each process loaded it, and which process.

``streamjob run load_probe.py -- OUT_DIR``: building the pipeline (in ``streamjob run``'s process,
and in each slot) sleeps 0.4 s and writes ``load-<pid>.json`` with the wall-clock start and end;
ten records then go to a discarding sink. The start-up test checks that a forked slot loads the job
while ``streamjob run`` does (``slot_process.preloaded_loader``), not after its deployment.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import SinkFunction


class Discard(SinkFunction):
    def invoke(self, value: object) -> None:
        pass


def build(args: list[str]) -> StreamExecutionEnvironment:
    started = time.time()
    time.sleep(0.4)  # a job whose libraries take time to import
    report = {"pid": os.getpid(), "start": started, "end": time.time()}
    (Path(args[0]) / f"load-{os.getpid()}-{time.monotonic_ns()}.json").write_text(json.dumps(report), encoding="utf-8")
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection(list(range(10))).uid("numbers").add_sink(Discard()).uid("sink")
    return env
