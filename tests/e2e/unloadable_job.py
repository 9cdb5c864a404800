"""A job the e2e tests' pods run (no tests here): imports in the JobMaster, raises at import in a worker pod.

Worker pods, and only they, have ``JOBMASTER_ADDRESS`` (``operator/resources/pods.py``): the
JobMaster builds the graph and deploys it, every slot fails to load the job. No restart can mend
that (the same image and environment load it the same way), so the StreamJob must end Failed with
this module's message instead of restarting (``tests/e2e/test_operator_final_failures.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MESSAGE = "e2e-unloadable: this job refuses to load in a worker pod"
ENTRYPOINT = f"{Path(__file__).resolve()}:build"

if os.environ.get("JOBMASTER_ADDRESS"):
    raise RuntimeError(MESSAGE)


def _identity(i: int) -> int:
    return i


def build(argv: list[str]) -> Any:
    """``argv``: the output URI; a generator of numbers into a file sink."""
    from streamjob.worker.api import StreamExecutionEnvironment
    from streamjob.worker.api.file_sink import FileSink

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(300)
    numbers = env.from_generator(_identity, count=1000, records_per_second=100.0).uid("numbers")
    numbers.add_sink(FileSink(argv[0] if argv else "file:///tmp/streamjob-unloadable")).uid("out")
    return env
