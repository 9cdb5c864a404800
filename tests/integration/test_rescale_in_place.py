"""Local mode, real processes: ``POST /rescale`` rescales 2 → 3 → 1 with the JobMaster kept alive.

Issue 13, item 7: a rescale goes through a stop-with-savepoint (two-phase-commit sinks commit it once)
and the next attempt runs at the new parallelism on the slots registered, in the same JobMaster
process. The keyed-sum job's exactly-once FileSink output is checked exactly, the JobMaster keeps its
pid, the slots that stay keep theirs, no rescale counts as a restart, and a bad request is refused.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from streamjob.worker.protocol.rest import JobOverview, JobState, RescaleStatus
from streamjob.worker.testing import JobError, LocalJob
from tests.integration.jobs.support import (
    assert_exactly_once_until,
    long_keyed_sum,
    savepoint_metadata,
    stop_with_savepoint,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _rescale(job: LocalJob, parallelism: int, attempts: int = 5) -> JobOverview:
    """POST /rescale and waits until it completed; retried while a periodic checkpoint overtakes its savepoint."""
    for _ in range(attempts):
        accepted = job.post("/rescale", {"parallelism": parallelism})
        assert accepted["status"] == "IN_PROGRESS" and accepted["target"] == parallelism, accepted

        def done() -> JobOverview | None:
            info = job.overview()
            rescale = info.rescale
            if rescale is None or rescale.status is RescaleStatus.IN_PROGRESS or info.state is not JobState.RUNNING:
                return None
            return info

        info: JobOverview = job.poll(f"the rescale to {parallelism}", done, timeout=60)
        assert info.rescale is not None
        if info.rescale.status is RescaleStatus.COMPLETED:
            return info
        assert "overtook" in (info.rescale.reason or ""), info.rescale
    raise AssertionError(f"the rescale to {parallelism} failed {attempts} times")


def _refused(job: LocalJob, body: dict[str, Any]) -> str:
    with pytest.raises(JobError) as err:
        job.post("/rescale", body)
    return str(err.value).split("\n", 1)[0]


def test_rescale_up_and_down_keeps_the_jobmaster_and_exact_output(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("rescale").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "max_parallelism=16",
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=2,
    ) as job:
        job.wait_for_checkpoints(1)
        jobmaster_pid = job.pid
        first = job.overview()
        assert first.parallelism == 2 and first.rescale is None
        before = job.worker_pids()

        refused = _refused(job, {"parallelism": 0})
        assert "-> 400" in refused and "parallelism must be between 1 and the job's max parallelism 16" in refused
        assert "-> 400" in _refused(job, {"parallelism": 17})
        assert "-> 400" in _refused(job, {"parallelism": "three"})

        up = _rescale(job, 3)
        assert up.parallelism == 3 and len(up.workers) == 3, up
        assert up.rescale is not None and up.rescale.source == 2 and up.rescale.savepoint is not None
        print("rescale 2->3 gap_ms", up.rescale.gap_ms)
        assert up.restarts == 0 and up.attempt > first.attempt, up
        assert up.restored_from is not None and up.rescale.savepoint in up.restored_from, up
        assert set(before) <= set(job.worker_pids()), "the slots that stay keep their processes"
        assert job.pid == jobmaster_pid and job.returncode is None
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 1)  # the rescaled attempt makes progress

        down = _rescale(job, 1)
        assert down.parallelism == 1 and len(down.workers) == 1, down
        assert down.restarts == 0 and down.rescale is not None and down.rescale.source == 3
        assert job.pid == jobmaster_pid and job.returncode is None
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 1)

        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)


def test_a_failure_right_after_a_rescale_restores_its_savepoint_not_an_older_checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Before the rescaled attempt's first checkpoint, the newest checkpoint predates the savepoint.

    Its two-phase-commit sinks committed the savepoint's output, so restoring the older checkpoint
    would write that output again: a restart in place restores the savepoint instead.
    """
    root = tmp_path_factory.mktemp("rescale-floor").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "interval=600000",  # no periodic checkpoint: only the one triggered below
        "restarts=5",
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=2,
    ) as job:
        job.wait_for_running()
        job.post("/checkpoints")
        job.wait_for_checkpoints(1)
        up = _rescale(job, 3)
        assert up.rescale is not None and up.rescale.savepoint is not None
        job.kill_worker(2)
        info = JobOverview.model_validate(job.wait_for_running(restarts=1))
        # The savepoint, or the checkpoint the JobMaster takes right after a rescale if it completed first.
        restored = info.restored_from or ""
        savepoint_id = savepoint_metadata(up.rescale.savepoint).checkpoint_id
        newer = (m := re.search(r"/chk-(\d+)/", restored)) is not None and int(m.group(1)) > savepoint_id
        assert up.rescale.savepoint in restored or newer, (restored, savepoint_id)
        assert info.parallelism == 3 and job.pid is not None and job.returncode is None
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)
