"""Two-input operators exactly once through real faults, on hashmap and RocksDB.

The jobs (``jobs/two_inputs.py``): a ``KeyedCoProcessFunction`` whose keyed state and event-time
timers are shared by two generator inputs, and a ``KeyedBroadcastProcessFunction`` judging keyed
events by versioned broadcast rules. The committed output must be exactly the failure-free run's
after a worker SIGKILL mid-run, and across a rescale from a stop-with-savepoint at p=3 -> 1
(hashmap) and 1 -> 3 (RocksDB): keyed state and timers move by key group; the broadcast state,
written once by subtask 0, reaches every new subtask.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import two_inputs
from tests.integration.jobs.support import job_path, stop_with_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKENDS = {"hashmap": [], "rocksdb": ["rocksdb=1"]}
JOB = job_path("two_inputs.py")
MODES = ["co", "broadcast"]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("mode", MODES)
def test_two_inputs_exactly_once_through_a_worker_kill(tmp_path: Path, mode: str, backend: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    args = [f"mode={mode}", f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    with LocalJob(JOB, *args, checkpoint_dir=(tmp_path / "chk").as_uri()) as job:
        job.wait_for_checkpoints(3)
        assert job.job()["state"] == "RUNNING", job.describe()
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None, info
        assert job.wait(timeout=200) == 0, job.describe()
    assert sorted(read_committed(out)) == two_inputs.expected(mode, count, keys)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("before", "after", "backend"), [(3, 1, "hashmap"), (1, 3, "rocksdb")])
def test_two_inputs_rescale_from_a_savepoint(tmp_path: Path, mode: str, backend: str, before: int, after: int) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 2500, 10
    args = [f"mode={mode}", f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    checkpoints = (tmp_path / "chk").as_uri()
    with LocalJob(JOB, *args, parallelism=before, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(3)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert len(read_committed(out)) < count, "stopped too late to test anything"
    with LocalJob(JOB, *args, parallelism=after, restore=savepoint, checkpoint_dir=checkpoints) as job:
        assert job.wait(timeout=200) == 0, job.describe()
    assert sorted(read_committed(out)) == two_inputs.expected(mode, count, keys)


def test_the_broadcast_rules_example_runs_as_written(tmp_path: Path) -> None:
    """``streamjob run examples/broadcast_rules.py -p 2``: the four alerts derived in its unit test."""
    from tests.unit.test_example_broadcast_rules import EXPECTED

    example = str(Path(__file__).resolve().parents[2] / "examples" / "broadcast_rules.py")
    with LocalJob(example, parallelism=2, checkpoint_dir=(tmp_path / "chk").as_uri()) as job:
        assert job.wait(timeout=120) == 0, job.describe()
        lines = sorted(line.split("> ", 1)[1] for line in job.stdout_lines if "> ALERT" in line)  # "<subtask>> "
    assert lines == EXPECTED
