"""The start-up benchmark's job: a few records through a map into a sink that notes its first record.

``streamjob run bench/jobs/startup_job.py -- --out DIR [--records N]``: the source emits N small
integers, a map doubles them, and every sink subtask writes ``first-<subtask>-<pid>.json`` with the
wall-clock time (``time.time()``) of its first record and the ``streamjob.worker`` folder it ran
(``bench/startup.py`` checks that a side ran its own code). Nothing else: the job is tiny so that
the whole ``streamjob run`` process measures start-up and shut-down.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import streamjob.worker
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.functions import RichFunction
from streamjob.worker.api.sinks import SinkFunction


class FirstRecordSink(RichFunction, SinkFunction):
    """Writes the time of the first record it receives, once per subtask."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.seen = False
        self.subtask = 0

    def open(self, runtime_context: Any) -> None:
        self.subtask = runtime_context.get_index_of_this_subtask()

    def invoke(self, value: Any) -> None:
        if self.seen:
            return
        self.seen = True
        report = {"first_record": time.time(), "worker": str(Path(streamjob.worker.__file__).resolve().parent)}
        path = Path(self.out) / f"first-{self.subtask}-{os.getpid()}.json"
        path.write_text(json.dumps(report), encoding="utf-8")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--records", type=int, default=10)
    args = parser.parse_args(argv)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection(list(range(args.records))).map(lambda x: x * 2).add_sink(FirstRecordSink(args.out))
    env.execute("startup")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
