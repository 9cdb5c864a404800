"""A job that reports which modules its processes imported: the JobMaster's at exit, each slot's at its first record.

``streamjob run modules_probe.py -- OUT_DIR``: a keyed job on the hashmap backend (file:// storage,
checkpoints every 100 ms) whose sink writes ``slot-<subtask>.json``, and the ``streamjob run``
process (the JobMaster) ``jobmaster.json`` when it exits, each the sorted ``sys.modules`` of its
process. The start-up tests check that no process of such a job imports S3, RocksDB or HTTP-client
code it does not need. Each slot also writes ``gc-slot-<subtask>.json``: whether its garbage collector
runs (the slots are forked while ``streamjob run`` holds it off: ``gc_pause``).
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from pathlib import Path
from typing import Any

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.functions import RichFunction
from streamjob.worker.api.sinks import SinkFunction


def _write(path: Path) -> None:
    path.write_text(json.dumps(sorted(sys.modules)), encoding="utf-8")


class ModulesSink(RichFunction, SinkFunction):
    """Writes its process's modules once, at the first record."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.subtask = 0
        self.done = False

    def open(self, runtime_context: Any) -> None:
        self.subtask = runtime_context.get_index_of_this_subtask()

    def invoke(self, value: Any) -> None:
        if not self.done:
            self.done = True
            _write(Path(self.out) / f"slot-{self.subtask}.json")
            collector = {"enabled": gc.isenabled(), "threshold": list(gc.get_threshold())}
            (Path(self.out) / f"gc-slot-{self.subtask}.json").write_text(json.dumps(collector), encoding="utf-8")


def build(args: list[str]) -> StreamExecutionEnvironment:
    out = args[0]
    if sys.argv[1:2] == ["run"]:  # the JobMaster's process (`python -m streamjob.worker.cli run ...`)
        atexit.register(_write, Path(out) / "jobmaster.json")
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(100)
    env.from_collection([(f"k{i % 7}", i) for i in range(200)]).uid("numbers").key_by(lambda r: r[0]).sum(1).uid(
        "sums"
    ).add_sink(ModulesSink(out)).uid("sink")
    return env
