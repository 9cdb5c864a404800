"""Ready, Stable and CheckpointsProgressing say what is true in every lifecycle state (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamjob.operator.model.jobmaster import JobMasterView
from streamjob.operator.model.status import Deployment, LifecycleState, Operation, StreamJobStatus
from streamjob.operator.observer.pods import PodView
from streamjob.operator.reconciler import conditions
from streamjob.operator.reconciler.conditions import Progress
from streamjob.operator.reconciler.facts import Draft, Facts
from streamjob.operator.reconciler.plan import count_in_place_restarts
from streamjob.operator.resources.labels import JobRef
from streamjob.worker.protocol.rest import JobState as RunState

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEP = Deployment(attempt=1, job_id="j", spec={}, started_at="2026-01-01T00:00:00Z", running_since="x", stable=True)
OK = Progress(stalled=False, seconds=1, threshold=30, checkpointed=True)


def derive(
    status: StreamJobStatus,
    progress: Progress | None = OK,
    *,
    checkpointing: bool = True,
    pods: tuple[PodView, ...] = (),
) -> dict[str, tuple[str, str]]:
    facts = Facts(JobRef("n", "ns", "u"), 1, None, (), status, NOW, "new", pods=pods)
    d = Draft(facts)
    conditions.apply(d, progress)
    return {c.type: (c.status, c.reason) for c in d.status.conditions}


@pytest.mark.parametrize("state", [s for s in LifecycleState if not s.running])
def test_no_condition_is_true_when_no_attempt_runs(state: LifecycleState) -> None:
    got = derive(StreamJobStatus(lifecycle_state=state, deployment=DEP if state is LifecycleState.FAILED else None))
    assert got == {
        "Ready": ("False", state.value),
        "Stable": ("False", state.value),
        "CheckpointsProgressing": ("False", state.value),
        "PodsScheduled": ("False", state.value),
    }


def test_a_running_stable_job_is_ready_stable_and_progressing() -> None:
    got = derive(StreamJobStatus(lifecycle_state=LifecycleState.RUNNING, deployment=DEP), pods=(_pod("jm"),))
    assert got == {
        "Ready": ("True", "Running"),
        "Stable": ("True", "Stable"),
        "CheckpointsProgressing": ("True", "Progressing"),
        "PodsScheduled": ("True", "Scheduled"),
    }


def test_a_rolled_back_job_is_ready_and_says_so() -> None:
    dep = DEP.model_copy(update={"rolled_back": True})
    got = derive(StreamJobStatus(lifecycle_state=LifecycleState.ROLLED_BACK, deployment=dep))
    assert got["Ready"] == ("True", "RolledBack") and got["Stable"] == ("True", "Stable")


def test_not_yet_stable_stalled_and_no_interval() -> None:
    young = DEP.model_copy(update={"stable": False})
    stalled = Progress(stalled=True, seconds=90, threshold=30, checkpointed=True)
    got = derive(StreamJobStatus(lifecycle_state=LifecycleState.RUNNING, deployment=young), stalled)
    assert got["Stable"] == ("False", "NotYetStable") and got["CheckpointsProgressing"] == ("False", "Stalled")
    running = StreamJobStatus(lifecycle_state=LifecycleState.RUNNING, deployment=DEP)
    unknown = derive(running, Progress(stalled=False, seconds=5, threshold=None, checkpointed=False))
    assert unknown["CheckpointsProgressing"] == ("Unknown", "NoInterval") and unknown["Ready"] == ("True", "Running")
    seen = derive(running, Progress(stalled=False, seconds=5, threshold=None, checkpointed=True))
    assert seen["CheckpointsProgressing"] == ("True", "Progressing")


def test_an_operation_in_flight_is_not_ready() -> None:
    op = Operation.model_validate({"kind": "upgrade", "step": "snapshot", "started_at": "t", "step_started_at": "t"})
    got = derive(StreamJobStatus(lifecycle_state=LifecycleState.UPGRADING, deployment=DEP, operation=op))
    assert got["Ready"] == ("False", "Upgrading") and got["Stable"] == ("False", "Upgrading")


def _pod(name: str, unschedulable: str | None = None, phase: str = "Running") -> PodView:
    return PodView(name, "worker", 1, phase, None, phase == "Running", None, unschedulable=unschedulable)


def test_pods_the_scheduler_cannot_place_are_named_with_its_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"
    pods = (_pod("j-jobmaster-1"), _pod("j-worker-1-0", message, "Pending"), _pod("j-worker-1-1", message, "Pending"))
    facts = Facts(
        JobRef("n", "ns", "u"),
        1,
        None,
        (),
        StreamJobStatus(lifecycle_state=LifecycleState.DEPLOYING),
        NOW,
        "new",
        pods=pods,
    )
    d = Draft(facts)
    conditions.apply(d, None)
    scheduled = d.status.condition("PodsScheduled")
    assert scheduled is not None and (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message == f"pod j-worker-1-0 (and 1 more pods): {message}"


def _round(status: StreamJobStatus, jm: JobMasterView) -> Draft:
    d = Draft(Facts(JobRef("n", "ns", "u"), 1, None, (), status, NOW, "new", jobmaster=jm))
    count_in_place_restarts(d)
    conditions.apply(d, OK)
    return d


def test_restarts_the_jobmaster_makes_in_place_show_in_status_and_ready() -> None:
    running = StreamJobStatus(lifecycle_state=LifecycleState.RUNNING, deployment=DEP)
    restarting = JobMasterView(reachable=True, state=RunState.RESTARTING, restarts=1, failure="worker w-0 lost")
    d = _round(running, restarting)
    assert d.status.restarts.in_place == 1 and d.status.restarts.count == 0
    assert d.status.restarts.last_reason == "worker w-0 lost"
    ready = d.status.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "Restarting")
    assert [e.reason for e in d.events] == ["JobRestartedInPlace"]
    # the next rounds: the same count is not counted again; running again is Ready again
    again = _round(d.status, JobMasterView(reachable=True, state=RunState.RUNNING, restarts=1))
    assert again.status.restarts.in_place == 1 and again.events == []
    assert (again.status.condition("Ready") or ready).status == "True"
    # two more, then a replaced JobMaster that counts from 0 again: 1 + 2 + 1
    more = _round(again.status, JobMasterView(reachable=True, state=RunState.RUNNING, restarts=3))
    fresh = _round(more.status, JobMasterView(reachable=True, state=RunState.RUNNING, restarts=1))
    assert (more.status.restarts.in_place, fresh.status.restarts.in_place) == (3, 4)


def test_an_unreachable_jobmaster_changes_no_count() -> None:
    running = StreamJobStatus(lifecycle_state=LifecycleState.RUNNING, deployment=DEP)
    d = _round(running, JobMasterView(reachable=False))
    assert d.status.restarts.in_place == 0 and d.events == []
