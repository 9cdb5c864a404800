"""Local mode, real processes: a SIGKILLed slot is replaced while the JobMaster and the other slots stay up.

Flink's failover (issue 14, item 5): on a worker failure the JobMaster cancels the remaining tasks,
gets a new slot process for the lost one and redeploys every task from the latest completed
checkpoint as a new attempt. The keyed-sum job's exactly-once FileSink output is checked exactly
after repeated kills, and the JobMaster (the ``streamjob run`` process) and the surviving slot
processes keep their pids throughout.
"""

from __future__ import annotations

import pytest

from tests.integration.jobs.support import (
    assert_exactly_once_until,
    long_keyed_sum,
    stop_with_savepoint,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KILLS = 6


def test_repeated_slot_kills_keep_the_jobmaster_and_exact_output(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("failover").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "restarts=20",
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=3,
    ) as job:
        job.wait_for_checkpoints(1)
        jobmaster_pid = job.pid
        first = job.overview()
        for kill in range(1, KILLS + 1):
            pids = job.worker_pids()
            victim = kill % len(pids)
            killed = job.kill_worker(victim)
            info = job.wait_for_running(restarts=kill)
            after = job.worker_pids()
            assert killed not in after, job.describe()
            survivors = [pid for i, pid in enumerate(pids) if i != victim]
            assert set(survivors) <= set(after), f"kill {kill}: survivors {survivors} replaced: {after}"
            assert info["attempt"] == first.attempt + kill, info
            assert info["restored_from"] is not None and "/chk-" in info["restored_from"], info
            assert job.pid == jobmaster_pid and job.returncode is None
            done = job.checkpoints()["counts"]["completed"]
            job.wait_for_checkpoints(done + 1)  # the new attempt makes progress before the next kill
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)
    restarts = [line for line in job.output().splitlines() if "restarting" in line.lower()]
    assert len(restarts) >= KILLS, job.describe()
