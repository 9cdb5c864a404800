"""The event policy: only transitions, failures, savepoints, stalls and answers — none per checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streamjob.operator.model import LifecycleState
from streamjob.operator.reconciler.event_policy import REASONS, EventKind
from streamjob.operator.reconciler.operations import DONE_EVENT
from streamjob.operator.testing import PlannerWorld as World

pytestmark = pytest.mark.unit

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
POSTED = re.compile(r'(?:\bd\.event|EventRecord)\(\s*"(\w+)"')
SPEC: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
}


def posted_reasons() -> set[str]:
    found = {m for path in OPERATOR.rglob("*.py") for m in POSTED.findall(path.read_text())}
    return found | set(DONE_EVENT.values())


def test_every_reason_the_operator_posts_is_in_the_policy() -> None:
    posted = posted_reasons()
    assert len(posted) > 20, posted  # the scan finds the calls
    assert posted - set(REASONS) == set(), "add them to event_policy.REASONS"
    assert "CheckpointCompleted" not in REASONS and "CheckpointCompleted" not in posted


def test_failures_are_warnings_and_transitions_are_not_per_checkpoint() -> None:
    assert {k for k in REASONS.values()} == set(EventKind)
    assert not [r for r in REASONS if "Checkpoint" in r and r.endswith("Completed")]


def test_a_steady_job_posts_no_event_for_its_checkpoints() -> None:
    w = World(SPEC)
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None)
    before = len(w.events)
    first = w.status.last_checkpoint
    for _ in range(120):  # two minutes: a checkpoint every second
        w.step()
    last = w.status.last_checkpoint
    assert last is not None and (last.id or 0) - (first.id or 0 if first else 0) >= 100
    assert w.events[before:] == [], w.events[before:]


def test_a_stall_is_one_warning_and_its_end_one_event() -> None:
    w = World(SPEC)
    w.run_until(lambda w: w.status.lifecycle_state is LifecycleState.RUNNING and w.status.operation is None)
    w.checkpointing = False
    w.run_until(lambda w: any(r == "CheckpointsStalled" for r, _ in w.warnings), steps=1300)
    stalled = w.status.condition("CheckpointsProgressing")
    assert stalled is not None and (stalled.status, stalled.reason) == ("False", "Stalled")
    for _ in range(5):
        w.step()
    w.checkpointing = True
    w.run_until(lambda w: any(r == "CheckpointsResumed" for r, _ in w.events), steps=5)
    reasons = [r for r, _ in w.events]
    assert reasons.count("CheckpointsStalled") == 1 and reasons.count("CheckpointsResumed") == 1
    progressing = w.status.condition("CheckpointsProgressing")
    assert progressing is not None and progressing.status == "True"
