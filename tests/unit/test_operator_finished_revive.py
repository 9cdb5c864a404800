"""A Finished job brought back (restartNonce, spec change) restores its final checkpoint and finishes again.

Its sources are all at end of input, so the new attempt ends as soon as it starts: its JobMaster
reports FINISHED, then its pods succeed. That is the job finishing, not an attempt that failed to
start: before, the operation's verify step took FINISHED for a failure (a restart, which restored
the same checkpoint and finished again) or, with the pods already ended, waited in Deploying until
its timeout. The e2e test with real processes is in ``tests/e2e/test_operator_finished_revive.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.testing import planner_spec
from streamjob.worker.protocol.rest import JobState

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = planner_spec()


def finished_world() -> World:
    w = World(dict(BASE))
    w.run_until(lambda w: w.status.last_checkpoint is not None and (w.status.last_checkpoint.id or 0) >= 2)
    w.checkpointing = False
    for p in w.pods.values():
        p.phase = "Succeeded"
        p.finished_at = w.now
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.FINISHED)
    return w


def attempt_pods_running(w: World, attempt: int) -> bool:
    pods = [p for p in w.pods.values() if p.attempt == attempt]
    return len(pods) == 3 and all(p.phase == "Running" for p in pods)


@pytest.mark.parametrize("how", ["jobmaster-says-finished", "pods-succeeded"])
def test_a_revived_finished_job_that_finishes_at_once_is_finished_not_restarted(how: str) -> None:
    w = finished_world()
    last = w.checkpoints["job01"][-1]
    w.update_spec(restartNonce=1)
    assert w.status.lifecycle_state is LifecycleState.DEPLOYING
    w.run_until(lambda w: attempt_pods_running(w, 2))
    assert w.deployed[-1][:3] == (2, "job01", w.checkpoint_location("job01", last))
    if how == "jobmaster-says-finished":
        w.jm_state = JobState.FINISHED  # it answers for a moment before its pod ends
        w.step()
    else:
        for p in w.pods.values():
            p.phase = "Succeeded"
            p.finished_at = w.now
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.FINISHED, steps=5)
    assert w.status.operation is None and w.status.restarts.count == 0 and w.status.attempt == 2
    assert [r for r, _ in w.events].count("JobFinished") == 2
    assert not w.warnings
    for _ in range(5):  # and it stays so
        w.step()
    assert w.status.lifecycle_state is LifecycleState.FINISHED and w.status.attempt == 2
