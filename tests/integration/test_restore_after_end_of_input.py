"""Restoring a snapshot taken after every source reached the end of its input: the job finishes at once.

A hang was once seen (an attempt that restored such a checkpoint stayed in DEPLOYING); it was the
operator's verify step (``tests/unit/test_operator_finished_revive.py``). These tests keep the
runtime's side proven in local mode: ``streamjob run --restore`` of a finished job's final
checkpoint (at its parallelism and rescaled) and of a stop-with-savepoint taken while the sources
had already ended (a slow reduce still working through their records) finishes with exit 0 within a
bounded time, and the committed output stays exact: nothing committed twice, nothing lost.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.storage.discovery import list_snapshots
from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, consumed_by_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

COUNT = 3000


def run(out: str, checkpoints: str, *args: str, restore: str | None = None, parallelism: int = 2) -> LocalJob:
    return LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        *args,
        parallelism=parallelism,
        checkpoint_dir=checkpoints,
        restore=restore,
    )


@pytest.mark.parametrize("parallelism", [2, 3, 1])
def test_restoring_the_final_checkpoint_of_a_finished_job_finishes_at_once(parallelism: int, tmp_path: Any) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "checkpoints").as_uri()
    with run(out, checkpoints, "rate=3000", "interval=200") as job:
        assert job.wait(60) == 0, job.describe()
    assert "job FINISHED" in job.output()
    assert keyed_sum.check_exactly_once(read_committed(out), COUNT) is None
    final = next(r for r in list_snapshots(checkpoints) if r.kind == "checkpoint" and r.problem is None)
    with run(out, checkpoints, "rate=3000", restore=final.location, parallelism=parallelism) as again:
        again.wait_for_line(rf"attempt 0 running, restored from checkpoint {final.id}")
        assert again.wait(60) == 0, again.describe()
    assert "job FINISHED" in again.output()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_resuming_a_stop_with_savepoint_taken_after_the_end_of_input_finishes_exactly(tmp_path: Any) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "checkpoints").as_uri()
    # unthrottled sources end at once; the reduce's 1.5 ms per record keeps the job running for seconds
    with run(out, checkpoints, "rate=0", "interval=60000", "slow_us=1500") as job:
        job.poll("the sources' end of input", lambda: job.job()["records_in"] >= COUNT, 30)
        savepoint = job.trigger_savepoint(stop=True)
        assert job.wait(60) == 0, job.describe()
    assert consumed_by_savepoint(savepoint, COUNT) == list(range(COUNT)), "taken after the end of input"
    with run(out, checkpoints, "rate=0", "interval=200", restore=savepoint) as resumed:
        resumed.wait_for_line(r"attempt 0 running, restored from savepoint")
        assert resumed.wait(60) == 0, resumed.describe()
    assert "job FINISHED" in resumed.output()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem
