"""Corrupt checkpoints skipped by storage discovery: one Warning each, remembered in status, never repeated.

The planner (``reconciler/corrupt.py``) against the fake world and on hand-made facts, and the
controller posting the event through the fake Kubernetes API. The e2e test with real S3 is
``tests/e2e/test_operator_corrupt_checkpoint.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamjob.operator import controller
from streamjob.operator.model import LifecycleState, StreamJobStatus
from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo
from streamjob.operator.observer.facts import Facts
from streamjob.operator.reconciler.corrupt import MAX_REMEMBERED, REASON, report_corrupt
from streamjob.operator.reconciler.facts import Draft
from streamjob.operator.resources.labels import JobRef
from streamjob.operator.settings import OperatorConfig
from streamjob.operator.testing import T0, fake_deps, planner_spec
from streamjob.operator.testing import PlannerWorld as World

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = planner_spec()


def running(w: World) -> bool:
    return w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None


def corrupt_warnings(w: World) -> list[str]:
    return [message for reason, message in w.warnings if reason == REASON]


def started(checkpoints: int = 3) -> World:
    w = World(dict(BASE))
    w.run_until(running)
    w.run_until(lambda w: w.status.last_checkpoint is not None and (w.status.last_checkpoint.id or 0) >= checkpoints)
    return w


def test_a_corrupt_newest_checkpoint_is_reported_once_and_the_restart_restores_the_previous_one() -> None:
    w = started()
    newest = w.checkpoints["job01"][-1]
    w.checkpointing = False
    w.corrupt["job01"] = {newest}
    for _ in range(5):
        w.step()
    [message] = corrupt_warnings(w)
    where = w.checkpoint_location("job01", newest)
    previous = w.checkpoint_location("job01", newest - 1)
    assert f"checkpoint {newest} of job job01 at {where} is skipped: invalid JSON" in message
    assert f"checkpoint {newest - 1} ({previous}) is used instead" in message
    [recorded] = w.status.corrupt_checkpoints
    assert (recorded.location, recorded.id, recorded.job_id, recorded.reason) == (
        where,
        newest,
        "job01",
        "invalid JSON",
    )
    assert recorded.reported_at is not None
    # A worker fails: the restart restores the checkpoint before the corrupt one, and says nothing new.
    w.pods["demo-worker-1-1"].failure = "pod demo-worker-1-1 exited with code 1"
    w.run_until(lambda w: running(w) and w.status.attempt == 2)
    assert w.deployed[-1][2] == previous
    w.checkpointing = True
    w.run_until(lambda w: w.status.last_checkpoint is not None and (w.status.last_checkpoint.id or 0) > newest)
    assert len(corrupt_warnings(w)) == 1
    assert [c.id for c in w.status.corrupt_checkpoints] == [newest]


def test_a_newly_found_corrupt_checkpoint_is_reported_and_the_known_one_is_not_again() -> None:
    w = started(checkpoints=4)
    w.checkpointing = False
    ids = w.checkpoints["job01"]
    w.corrupt["job01"] = {ids[-1]}
    w.step()
    w.step()
    w.corrupt["job01"] = {ids[-1], ids[-2]}
    for _ in range(3):
        w.step()
    first, second = corrupt_warnings(w)
    assert f"checkpoint {ids[-1]} of job job01" in first and f"checkpoint {ids[-2]} is used" in first.replace(
        f" ({w.checkpoint_location('job01', ids[-2])})", ""
    )
    assert f"checkpoint {ids[-2]} of job job01" in second and f"checkpoint {ids[-3]} (" in second
    assert [c.id for c in w.status.corrupt_checkpoints] == [ids[-2], ids[-1]]


def test_with_no_older_checkpoint_the_warning_says_nothing_can_be_restored() -> None:
    w = started(checkpoints=1)
    w.checkpointing = False
    w.corrupt["job01"] = set(w.checkpoints["job01"])
    w.step()
    w.step()
    messages = corrupt_warnings(w)
    assert len(messages) == len(w.checkpoints["job01"]) and messages
    assert all("nothing older can be restored" in m for m in messages)


def facts(status: StreamJobStatus, skipped: dict[str, tuple[CorruptCheckpoint, ...]]) -> Facts:
    latest = {
        job_id: SnapshotInfo(kind="checkpoint", id=1, job_id=job_id, location="s3://b/chk-1") for job_id in skipped
    }
    return Facts(
        job=JobRef("demo", "ns", "uid"),
        generation=1,
        spec=None,
        spec_errors=(),
        status=status,
        now=T0,
        new_job_id="new",
        latest=latest,
        skipped=skipped,
    )


def corrupt(job_id: str, cid: int) -> CorruptCheckpoint:
    return CorruptCheckpoint(location=f"s3://b/{job_id}/chk-{cid}", id=cid, job_id=job_id, reason="bad")


def test_many_corrupt_checkpoints_are_reported_once_within_a_bounded_status() -> None:
    status = StreamJobStatus(job_id="a")
    skipped = {"a": tuple(corrupt("a", i) for i in range(60, 1, -1)), "b": (corrupt("b", 9),)}
    events: list[str] = []
    for _ in range(4):  # the same storage seen round after round: reported once, then quiet
        d = Draft(facts(status, skipped))
        report_corrupt(d)
        status = d.status
        events += [e.message for e in d.events if e.reason == REASON and e.warning]
    assert len(events) == MAX_REMEMBERED and len(status.corrupt_checkpoints) == MAX_REMEMBERED
    assert [c.id for c in status.corrupt_checkpoints] == list(range(60, 60 - MAX_REMEMBERED, -1))
    # Older reported entries stay remembered behind the current ones, never pushing them out.
    status = status.model_copy(update={"corrupt_checkpoints": [corrupt("old", 1), *status.corrupt_checkpoints[:-1]]})
    d = Draft(facts(status, skipped))
    report_corrupt(d)
    assert [e.message for e in d.events] == [
        "checkpoint 41 of job a at s3://b/a/chk-41 is skipped: bad; checkpoint 1 (s3://b/chk-1) is used instead"
    ]
    d2 = Draft(facts(d.status, skipped))
    report_corrupt(d2)
    assert not d2.events


def test_the_controller_posts_the_warning_once_over_many_rounds() -> None:
    deps, kube, _, snaps = fake_deps(dict(BASE), config=OperatorConfig(metrics_port=None, operator_key="k" * 40))

    async def rounds(n: int) -> None:
        for _ in range(n):
            await controller.reconcile(deps, "ns", "demo")
            kube.kubelet()

    asyncio.run(rounds(4))
    snaps.latest["job1"] = SnapshotInfo(kind="checkpoint", id=6, job_id="job1", location="s3://b/c/ns/demo/job1/chk-6")
    snaps.skipped["job1"] = (
        CorruptCheckpoint(location="s3://b/c/ns/demo/job1/chk-7", id=7, job_id="job1", reason="not JSON"),
    )
    asyncio.run(rounds(6))
    posted = [(m, warning) for reason, m, warning in kube.events if reason == REASON]
    assert posted == [
        (
            "checkpoint 7 of job job1 at s3://b/c/ns/demo/job1/chk-7 is skipped: not JSON; "
            "checkpoint 6 (s3://b/c/ns/demo/job1/chk-6) is used instead",
            True,
        )
    ]
    assert kube.job is not None
    assert kube.job["status"]["corruptCheckpoints"][0]["location"] == "s3://b/c/ns/demo/job1/chk-7"
