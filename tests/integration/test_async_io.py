"""Async I/O exactly once through real faults, on hashmap and RocksDB.

The job (``jobs/async_enrich.py``) counts events per key (keyed state) and enriches every count
through an async function with requests in flight at every checkpoint; the committed output must be
exactly the failure-free run's after a worker SIGKILL (the restored attempt re-issues the requests
the checkpoint held: the slot logs say how many) and across a rescale from a stop-with-savepoint at
p=3 -> 1 and 1 -> 3 (the in-flight records are operator list state, redistributed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import async_enrich
from tests.integration.jobs.support import job_path, stop_with_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKENDS = {"hashmap": [], "rocksdb": ["rocksdb=1"]}
JOB = job_path("async_enrich.py")
REISSUED = re.compile(r"enrich: re-issuing (\d+) async requests of the restored checkpoint")


def _sorted(rows: list[list[object]]) -> list[list[object]]:
    return sorted(rows, key=lambda r: (str(r[0]), int(r[1])))  # type: ignore[call-overload]


def _reissued(job: LocalJob, attempt: int) -> int:
    """Requests the slots of ``attempt`` re-issued from the restored checkpoint (their logs)."""
    logs = Path(job.wait_for_line(r"worker logs in (\S+)").group(1))
    return sum(
        int(m.group(1))
        for log in logs.glob(f"slot-*-attempt-{attempt}.log")
        for m in REISSUED.finditer(log.read_text())
    )


@pytest.mark.parametrize(("backend", "ordered"), [("hashmap", "0"), ("rocksdb", "1")])
def test_async_io_exactly_once_through_a_worker_kill(tmp_path: Path, backend: str, ordered: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    with LocalJob(
        JOB,
        f"out={out}",
        f"count={count}",
        f"keys={keys}",
        "rate=500",
        f"ordered={ordered}",
        *BACKENDS[backend],
        checkpoint_dir=(tmp_path / "chk").as_uri(),
    ) as job:
        job.wait_for_checkpoints(3)
        assert job.job()["state"] == "RUNNING", job.describe()
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None, info
        assert job.wait(timeout=200) == 0, job.describe()
        assert _reissued(job, 1) > 0, "the restored checkpoint held no request in flight"
    assert _sorted(read_committed(out)) == async_enrich.expected(count, keys)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3)])
def test_async_io_rescale_from_a_savepoint(tmp_path: Path, backend: str, before: int, after: int) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 2000, 10
    args = [f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    checkpoints = (tmp_path / "chk").as_uri()
    with LocalJob(JOB, *args, parallelism=before, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(3)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert len(read_committed(out)) < count, "stopped too late to test anything"
    with LocalJob(JOB, *args, parallelism=after, restore=savepoint, checkpoint_dir=checkpoints) as job:
        assert job.wait(timeout=200) == 0, job.describe()
    assert _sorted(read_committed(out)) == async_enrich.expected(count, keys)
