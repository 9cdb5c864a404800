"""Checkpoint knobs: trigger decider, failure manager, restore planner (coordinator: test_checkpoint_coordinator)."""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.checkpoint.decider import SavepointTrigger, TriggerDecider
from streamjob.worker.checkpoint.failures import CheckpointFailure, CheckpointFailureManager, CheckpointFailureReason
from streamjob.worker.checkpoint.restore import plan_restore
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.errors import RestoreError
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot
from streamjob.worker.state.key_groups import key_group_range

pytestmark = pytest.mark.unit


# -- TriggerDecider (pure, clock passed in) ------------------------------------------------------------


def decider(**knobs: Any) -> TriggerDecider:
    return TriggerDecider(CheckpointSettings(**({"interval_ms": 1000} | knobs)))


def test_decider_first_checkpoint_is_due_at_once_then_every_interval() -> None:
    d = decider()
    assert d.delay(100.0, 0) == 0.0
    d.triggered(100.0)
    assert d.delay(100.25, 0) == pytest.approx(0.75)
    d.finished(100.3)
    assert d.delay(100.3, 0) == pytest.approx(0.7)
    assert d.delay(102.0, 0) == 0.0


def test_decider_waits_while_max_concurrent_checkpoints_are_in_progress() -> None:
    d = decider(max_concurrent=2)
    d.triggered(0.0)
    assert d.delay(0.5, 1) == pytest.approx(0.5)
    assert d.delay(5.0, 2) is None
    assert decider().delay(5.0, 1) is None


def test_decider_min_pause_counts_from_the_end_of_the_last_checkpoint() -> None:
    d = decider(min_pause_ms=500, max_concurrent=3)
    d.triggered(0.0)
    d.finished(0.9)
    assert d.delay(1.0, 0) == pytest.approx(0.4)
    d.triggered(1.4)
    assert d.delay(1.5, 1) is None, "a min pause forbids overlapping checkpoints"
    d.finished(3.0)
    assert d.delay(3.0, 0) == pytest.approx(0.5)


def test_decider_without_interval_never_triggers() -> None:
    d = TriggerDecider(CheckpointSettings())
    assert d.delay(0.0, 0) is None


# -- CheckpointFailureManager ------------------------------------------------------------------------


def test_failure_manager_fails_the_job_after_more_than_the_tolerable_number() -> None:
    manager = CheckpointFailureManager(2)
    assert not manager.on_failure(CheckpointFailureReason.TIMEOUT)
    assert not manager.on_failure(CheckpointFailureReason.DECLINED)
    assert manager.on_failure(CheckpointFailureReason.STORAGE)


def test_failure_manager_counts_consecutive_failures_and_ignores_subsumed_ones() -> None:
    manager = CheckpointFailureManager(1)
    assert not manager.on_failure(CheckpointFailureReason.TIMEOUT)
    manager.on_success()
    assert not manager.on_failure(CheckpointFailureReason.TIMEOUT)
    for reason in (
        CheckpointFailureReason.SUBSUMED,
        CheckpointFailureReason.JOB_STOPPING,
        CheckpointFailureReason.TASK_FAILURE,
    ):
        assert not manager.on_failure(reason)
    assert manager.on_failure(CheckpointFailureReason.DECLINED)


def test_zero_tolerable_failures_fails_on_the_first() -> None:
    assert CheckpointFailureManager(0).on_failure(CheckpointFailureReason.TIMEOUT)


def test_the_job_failure_message_names_the_checkpoint_the_number_and_the_reason() -> None:
    manager = CheckpointFailureManager(1)
    first = CheckpointFailure(4, CheckpointKind.CHECKPOINT, CheckpointFailureReason.DECLINED, "boom", 0)
    assert manager.job_failure(first) is None
    savepoint = CheckpointFailure(5, CheckpointKind.SAVEPOINT, CheckpointFailureReason.TIMEOUT, None, 0)
    assert manager.job_failure(savepoint) is None and manager.consecutive == 1, "a savepoint's failure never counts"
    second = CheckpointFailure(6, CheckpointKind.CHECKPOINT, CheckpointFailureReason.STORAGE, "disk full", 0)
    assert manager.job_failure(second) == (
        "checkpoint 6 failed and more than 1 consecutive checkpoint failures are tolerated: "
        "writing the checkpoint to storage failed: disk full"
    )


def savepoint_request(request_id: str) -> SavepointTrigger:
    return SavepointTrigger(f"file:///sp/{request_id}", False, request_id, lambda _: None, lambda _: None)


def test_queued_savepoints_go_first_one_at_a_time_and_hold_back_periodic_checkpoints() -> None:
    d = decider()
    d.queued.extend([savepoint_request("a"), savepoint_request("b")])
    assert d.delay(0.0, 0) is None, "no periodic checkpoint while savepoints wait"
    assert d.next_savepoint(1) is None, "a checkpoint is in progress"
    first = d.next_savepoint(0)
    assert first is not None and first.request_id == "a"
    assert [r.request_id for r in d.drop_queued()] == ["b"]
    assert d.next_savepoint(0) is None and d.delay(0.0, 0) == 0.0


# -- restore planner ------------------------------------------------------------------------------------


def keyed_graph(parallelism: int, *, uid: str = "sums", max_parallelism: int = 128) -> JobGraph:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    env.from_sequence(1, 100).uid("src").key_by(lambda x: x % 7).reduce(lambda a, b: a + b).uid(uid).add_sink(
        DiscardingSink()
    ).uid("sink")
    return build_job_graph(env.transformations, default_parallelism=parallelism, max_parallelism=max_parallelism)


def handle(path: str, key_groups: tuple[int, int] | None = None) -> StateHandle:
    start, end = key_groups if key_groups is not None else (None, None)
    return StateHandle(path=path, size=1, sha256="0" * 64, key_group_start=start, key_group_end=end)


def snapshot_of(parallelism: int, *, max_parallelism: int = 128, uid: str = "sums") -> CheckpointMetadata:
    sums = [
        SubtaskSnapshot(
            subtask_index=i, keyed=[handle(f"{uid}/{i}/keyed", key_group_range(max_parallelism, parallelism, i))]
        )
        for i in range(parallelism)
    ]
    src = [SubtaskSnapshot(subtask_index=i, operator=[handle(f"src/{i}/op")]) for i in range(parallelism)]
    return CheckpointMetadata(
        kind="savepoint",
        checkpoint_id=5,
        job_id="old",
        job_name="unit",
        namespace="local",
        trigger_timestamp_ms=1,
        completion_timestamp_ms=2,
        duration_ms=1,
        total_size=0,
        max_parallelism=max_parallelism,
        mode="EXACTLY_ONCE",
        operators={
            uid: OperatorSnapshot(
                uid=uid, name="Reduce", parallelism=parallelism, max_parallelism=max_parallelism, subtasks=sums
            ),
            "src": OperatorSnapshot(
                uid="src", name="Source", parallelism=parallelism, max_parallelism=max_parallelism, subtasks=src
            ),
        },
    )


def keyed_paths(plans: dict[tuple[str, int], Any], uid: str = "sums") -> dict[int, list[str]]:
    return {i: [h.path for h in plan.keyed.get(uid, [])] for (v, i), plan in sorted(plans.items()) if v == uid}


def test_restore_one_to_three_gives_every_new_subtask_the_overlapping_key_groups() -> None:
    plans = plan_restore(snapshot_of(1), keyed_graph(3), allow_non_restored_state=False)
    assert keyed_paths(plans) == {0: ["sums/0/keyed"], 1: ["sums/0/keyed"], 2: ["sums/0/keyed"]}
    for i in range(3):
        assert [[h.path for h in per] for per in plans[("src", i)].operator["src"]] == [["src/0/op"]]


def test_restore_three_to_one_gives_the_single_subtask_every_key_group() -> None:
    plans = plan_restore(snapshot_of(3), keyed_graph(1), allow_non_restored_state=False)
    assert keyed_paths(plans) == {0: ["sums/0/keyed", "sums/1/keyed", "sums/2/keyed"]}
    assert [[h.path for h in per] for per in plans[("src", 0)].operator["src"]] == [
        ["src/0/op"],
        ["src/1/op"],
        ["src/2/op"],
    ]


def test_restore_three_to_two_reads_only_overlapping_ranges() -> None:
    plans = plan_restore(snapshot_of(3), keyed_graph(2), allow_non_restored_state=False)
    assert keyed_paths(plans) == {0: ["sums/0/keyed", "sums/1/keyed"], 1: ["sums/1/keyed", "sums/2/keyed"]}


def test_restore_at_equal_parallelism_maps_subtask_to_subtask() -> None:
    plans = plan_restore(snapshot_of(2), keyed_graph(2), allow_non_restored_state=False)
    assert keyed_paths(plans) == {0: ["sums/0/keyed"], 1: ["sums/1/keyed"]}


def test_uid_mismatch_is_a_restore_error_naming_the_uid() -> None:
    with pytest.raises(RestoreError, match=r"operator uid\(s\) \['sums'\].*allow-non-restored-state"):
        plan_restore(snapshot_of(2), keyed_graph(2, uid="totals"), allow_non_restored_state=False)


def test_allow_non_restored_state_drops_the_unknown_uid() -> None:
    plans = plan_restore(snapshot_of(2), keyed_graph(2, uid="totals"), allow_non_restored_state=True)
    assert all(not plan.keyed for plan in plans.values())
    assert plans[("src", 1)].operator["src"]


def test_changed_max_parallelism_is_a_restore_error() -> None:
    with pytest.raises(RestoreError, match=r"max parallelism 128 but the job now has 64"):
        plan_restore(snapshot_of(2), keyed_graph(2, max_parallelism=64), allow_non_restored_state=True)
