"""``POST /savepoints`` with a ``request_key`` on a real ``streamjob run`` process: a retry is idempotent.

The operator sends its stop-with-savepoint with a key and asks again with it when the answer is
lost: the same key answers the request it started (one stop, one savepoint), a different key while
it runs is refused as before. The job stopped by the one savepoint restores from it exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.protocol.rest import ErrorBody, SavepointTriggered
from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM
from tests.integration.test_attack_rest import raw

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNT = 50_000


def test_the_same_key_twice_is_one_stop_and_a_different_key_is_refused(tmp_path: Path) -> None:
    out, checkpoints, savepoints = (tmp_path / "out").as_uri(), (tmp_path / "ck").as_uri(), tmp_path / "sp"
    job = LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=500",
        parallelism=2,
        checkpoint_dir=checkpoints,
        savepoint_dir=str(savepoints),
        checkpoint_interval="1h",
    )
    with job:
        job.wait_for_running()
        url, auth = f"{job.rest_url}/savepoints", {"Authorization": f"Bearer {job.rest_token}"}
        key = {"stop": True, "request_key": "uid:upgrade:2026-01-02T03:04:05.678Z"}
        first_status, first = raw("POST", url, key, auth)
        again_status, again = raw("POST", url, key, auth)
        other_status, other = raw("POST", url, {"stop": True, "request_key": "another"}, auth)
        assert (first_status, again_status) == (202, 200), (first, again)
        request_id = SavepointTriggered.model_validate(first).request_id
        assert SavepointTriggered.model_validate(again).request_id == request_id
        assert other_status == 409, other
        error = ErrorBody.model_validate(other).error
        # in progress, or (a fast stop) already ended: either way not a second savepoint
        assert "a savepoint is already in progress" in error or "savepoints can only be taken" in error, error
        assert job.wait() == 0, job.describe()
    taken = sorted(p for p in savepoints.rglob("savepoint-*") if p.is_dir())
    assert len(taken) == 1, taken
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=0",
        parallelism=2,
        checkpoint_dir=checkpoints,
        restore=taken[0].as_uri(),
    ) as resumed:
        assert resumed.wait(timeout=240) == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem
