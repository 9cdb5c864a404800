"""``python job.py``: ``env.execute()`` with no streamjob command around it runs the job on the local MiniCluster.

The API finds that runner through the ``streamjob.executors`` entry point (it never imports it), so
this runs the real thing: a real interpreter, real slot processes, real checkpoints on disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_a_script_that_calls_execute_runs_to_the_end_with_exact_output(tmp_path: Path) -> None:
    checkpoints = (tmp_path / "ck").as_uri()
    job = tmp_path / "script_job.py"
    job.write_text(
        "from streamjob.worker.api import StreamExecutionEnvironment\n"
        "env = StreamExecutionEnvironment.get_execution_environment()\n"
        "env.enable_checkpointing(50)\n"
        "env.from_elements(1, 2, 3, 4).map(lambda x: f'out-{x * 10}').print()\n"
        f"code = env.execute('script-job', checkpoints_uri={checkpoints!r})\n"
        "raise SystemExit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, str(job)], cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("out-")) == [
        "out-10",
        "out-20",
        "out-30",
        "out-40",
    ]
    assert "job FINISHED" in done.stderr
    assert (tmp_path / "ck" / "local" / "script-job").is_dir()
