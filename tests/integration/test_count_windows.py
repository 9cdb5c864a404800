"""Count windows and a custom trigger with an evictor, exactly once through real faults, on hashmap and RocksDB.

The job (``jobs/count_windows.py``) runs ``count_window(5)`` and, after a timestamp-keeping ``map``,
tumbling event-time windows with ``CountTrigger(3)`` + ``CountEvictor(2)``; its output must be exactly
the failure-free run's after a worker SIGKILL mid-window (window contents, trigger counts and
window-scoped timers restored from the checkpoint) and across a rescale from a stop-with-savepoint at
p=3 -> 1 (all of it moves by key group).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import count_windows
from tests.integration.jobs.support import job_path, stop_with_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKENDS = {"hashmap": [], "rocksdb": ["rocksdb=1"]}
JOB = job_path("count_windows.py")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_count_and_trigger_windows_exactly_once_through_a_worker_kill(tmp_path: Path, backend: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    args = [f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    with LocalJob(JOB, *args, checkpoint_dir=(tmp_path / "chk").as_uri()) as job:
        job.wait_for_checkpoints(3)
        assert job.job()["state"] == "RUNNING", job.describe()
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None, info
        assert job.wait(timeout=200) == 0, job.describe()
    assert count_windows.rows(read_committed(out)) == count_windows.expected(count, keys)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_count_and_trigger_windows_rescale_3_to_1_from_a_savepoint(tmp_path: Path, backend: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    args = [f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    checkpoints = (tmp_path / "chk").as_uri()
    with LocalJob(JOB, *args, parallelism=3, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(3)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert len(read_committed(out)) < len(count_windows.expected(count, keys)), "stopped too late to test anything"
    with LocalJob(JOB, *args, parallelism=1, restore=savepoint, checkpoint_dir=checkpoints) as job:
        assert job.wait(timeout=200) == 0, job.describe()
    assert count_windows.rows(read_committed(out)) == count_windows.expected(count, keys)
