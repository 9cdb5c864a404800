"""A job whose module raises at import in worker slot processes only (the JobMaster loads it fine).

Stands for a job that imports a module missing from the workers' image. With checkpointing on, the
default restart strategy restarts (almost) forever: the failure must end the job at once instead.
"""

from __future__ import annotations

import sys

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink

if sys.argv[1:2] == ["slot"]:  # `python -m streamjob.worker.cli slot --jobmaster ...`
    raise ImportError("No module named 'only_on_the_jobmaster' (injected: this job imports it in the slots)")


def build(args: list[str]) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    env.from_generator(lambda i: i, 1_000, 500.0).uid("numbers").add_sink(DiscardingSink()).uid("sink")
    return env
