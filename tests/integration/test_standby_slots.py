"""Local mode, real processes: a standby slot takes over a SIGKILLed slot's tasks at once.

``streamjob run --standby-slots 1`` keeps one slot process more than the job needs; it registers with
the JobMaster as an idle spare (``GET /job``'s ``spare_slots``). When a slot process is killed the
JobMaster redeploys every task from the latest checkpoint onto the survivors and the spare, without
waiting for the process started in the lost one's place, which registers as the next spare. The
keyed-sum job's exactly-once output is checked exactly after the kills; the JobMaster keeps its pid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob
from tests.integration.jobs.support import (
    assert_exactly_once_until,
    long_keyed_sum,
    stop_with_savepoint,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KILLS = 3


def slot_processes(job: LocalJob) -> set[int]:
    """The JobMaster's child processes: every slot process, spare ones included."""
    children = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def spares(job: LocalJob) -> set[int]:
    """Slot processes that hold no slot of the running attempt."""
    return slot_processes(job) - set(job.worker_pids())


def wait_for_spare(job: LocalJob, unseen: set[int]) -> int:
    """Waits until one spare slot registered, a process not in ``unseen``; returns its pid."""

    def probe() -> int | None:
        found = spares(job)
        if job.overview().spare_slots == 1 and len(found) == 1 and not found & unseen:
            return next(iter(found))
        return None

    pid: int = job.poll("one new spare slot registered", probe, 60)
    return pid


def test_killed_slots_are_taken_over_by_the_spare_and_a_new_spare_registers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("standby").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "restarts=20",
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=2,
        options=["--standby-slots", "1"],
    ) as job:
        job.wait_for_checkpoints(1)
        jobmaster_pid = job.pid
        seen = set(job.worker_pids())
        spare = wait_for_spare(job, seen)
        seen.add(spare)
        first = job.overview().attempt
        for kill in range(1, KILLS + 1):
            pids = job.worker_pids()
            killed = job.kill_worker(kill % len(pids))
            info = job.wait_for_running(restarts=kill)
            after = job.worker_pids()
            assert killed not in after, job.describe()
            assert spare in after, f"kill {kill}: the spare {spare} did not take over: {after}"
            assert set(pids) - {killed} <= set(after), f"kill {kill}: survivors {pids} replaced: {after}"
            assert info["attempt"] == first + kill, info
            assert info["restored_from"] is not None and "/chk-" in info["restored_from"], info
            spare = wait_for_spare(job, seen)  # the process started for the lost slot
            seen.add(spare)
            assert job.pid == jobmaster_pid and job.returncode is None
            done = job.checkpoints()["counts"]["completed"]
            job.wait_for_checkpoints(done + 1)  # the new attempt makes progress before the next kill
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)
