"""The checkpoint knobs: trigger decider, failure manager, the coordinator with fakes, and the restore planner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator, SavepointTrigger
from streamjob.worker.checkpoint.decider import TriggerDecider
from streamjob.worker.checkpoint.failures import CheckpointFailureManager, CheckpointFailureReason
from streamjob.worker.checkpoint.pending import AckResult, TaskAck
from streamjob.worker.checkpoint.restore import plan_restore
from streamjob.worker.checkpoint.stats import CheckpointStats
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.errors import CheckpointError, RestoreError, StorageError
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot
from streamjob.worker.state.key_groups import key_group_range
from streamjob.worker.storage.retention import RetentionPlan

pytestmark = pytest.mark.unit

T = TypeVar("T")


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


# -- CheckpointCoordinator with a fake gateway and a fake storage ------------------------------------------


def small_graph() -> JobGraph:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.from_sequence(1, 10).uid("src").key_by(lambda x: x % 2).reduce(lambda a, b: a + b).uid("sums").add_sink(
        DiscardingSink()
    ).uid("sink")
    return build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)


class Log:
    """What the fakes saw, in order across both of them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def kinds(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]


class FakeGateway:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.barriers: list[Barrier] = []

    def trigger(self, barrier: Barrier) -> None:
        self.barriers.append(barrier)
        self.log.events.append(("trigger", barrier.id))

    def notify_complete(self, checkpoint_id: int) -> None:
        self.log.events.append(("notify", checkpoint_id))

    def notify_aborted(self, checkpoint_id: int) -> None:
        self.log.events.append(("abort", checkpoint_id))


class FakeStorage:
    """The coordinator's storage view in memory (mypy checks it against ``CoordinatorStorageView``)."""

    def __init__(self, log: Log, fail_metadata: bool = False) -> None:
        self.log = log
        self.fail_metadata = fail_metadata
        self.metadata: dict[int, CheckpointMetadata] = {}

    def next_checkpoint_id(self, *, at_least: int = 1) -> int:
        return max([at_least, *(cid + 1 for cid in self.metadata)])

    def new_savepoint_dir(self, target: str | None = None) -> str:
        return f"{target or 'file:///sp'}/savepoint-{len(self.metadata)}"

    def write_metadata(self, meta: CheckpointMetadata, *, savepoint_dir: str | None = None) -> str:
        if self.fail_metadata:
            raise StorageError("disk full")
        self.metadata[meta.checkpoint_id] = meta
        self.log.events.append(("metadata", meta.checkpoint_id))
        base = savepoint_dir or f"file:///ck/chk-{meta.checkpoint_id}"
        return f"{base}/_metadata"

    def discard(self, checkpoint_id: int, *, savepoint_dir: str | None = None) -> int:
        self.log.events.append(("discard", checkpoint_id))
        return 0

    def apply_retention(self, retained: int) -> RetentionPlan:
        self.log.events.append(("retain", retained))
        return RetentionPlan((), (), ())


class Harness:
    def __init__(self, *, fail_metadata: bool = False, **knobs: Any) -> None:
        self.log = Log()
        self.gateway = FakeGateway(self.log)
        self.storage: FakeStorage = FakeStorage(self.log, fail_metadata)
        self.failures: list[str] = []
        self.graph = small_graph()
        self.stats = CheckpointStats()
        self.executor = ThreadPoolExecutor(2)
        self.coordinator = CheckpointCoordinator(
            settings=CheckpointSettings(**knobs),
            storage=self.storage,
            graph=self.graph,
            job={"job_id": "j1", "name": "unit", "namespace": "local"},
            gateway=self.gateway,
            executor=self.executor,
            on_job_failure=self.failures.append,
            first_id=7,
            stats=self.stats,
        )

    def ack(self, checkpoint_id: int, vertex: str, subtask: int, size: int = 10) -> AckResult:
        handle = StateHandle(path=f"chk-{checkpoint_id}/{vertex}/{subtask}/state", size=size, sha256="0" * 64)
        states = {
            op.effective_uid(): {"keyed": [], "operator": [handle]} for op in self.graph.vertex(vertex).operators[:1]
        }
        return self.coordinator.receive_ack(
            checkpoint_id, (vertex, subtask), TaskAck(states, {"alignment_ms": 1.0}, [[subtask]])
        )

    def ack_all(self, checkpoint_id: int) -> None:
        for vertex, subtask in self.graph.subtasks():
            assert self.ack(checkpoint_id, vertex, subtask) is AckResult.SUCCESS


def run(test: Callable[[Harness], Coroutine[Any, Any, None]], **knobs: Any) -> Harness:
    harness = Harness(**knobs)
    try:
        asyncio.run(test(harness))
    finally:
        harness.executor.shutdown(wait=True)
    return harness


async def until(what: str, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def test_completion_writes_metadata_then_notifies_then_applies_retention() -> None:
    async def scenario(h: Harness) -> None:
        pending = h.coordinator.trigger()
        assert pending.id == 7
        assert h.gateway.barriers == [Barrier(7, pending.trigger_ms)]
        h.ack_all(7)
        await until("retention", lambda: bool(h.log.kinds("retain")))
        assert [e for e in h.log.events if e[0] != "discard"] == [
            ("trigger", 7),
            ("metadata", 7),
            ("notify", 7),
            ("retain", 3),
        ]
        meta = h.storage.metadata[7]
        assert meta.kind == "checkpoint"
        assert meta.job_id == "j1"
        assert set(meta.operators) == {"src", "sums", "sink"}
        assert [s.subtask_index for s in meta.operators["src"].subtasks] == [0, 1]
        assert meta.total_size == 40
        assert meta.source_positions == {"src": [[[0]], [[1]]]}
        assert h.coordinator.pending == {}
        assert h.coordinator.last_completed_location == "file:///ck/chk-7/_metadata"
        assert h.stats.completed == 1 and h.stats.failed == 0
        assert h.failures == []

    run(scenario, retained=3, interval_ms=1000)


def test_the_record_has_the_slowest_tasks_phases_and_the_sum_of_their_cpu() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        for n, (vertex, subtask) in enumerate(h.graph.subtasks()):
            states: dict[str, dict[str, list[StateHandle]]] = {
                op.effective_uid(): {"keyed": [], "operator": []} for op in h.graph.vertex(vertex).operators[:1]
            }
            h.coordinator.receive_ack(
                7, (vertex, subtask), TaskAck(states, {"alignment_ms": float(n), "cpu_ms": 1.5}, [[subtask]])
            )
        await until("completion", lambda: bool(h.log.kinds("notify")))
        record = h.stats.history[0]
        assert record.alignment_ms == len(h.graph.subtasks()) - 1
        assert record.cpu_ms == 1.5 * len(h.graph.subtasks())

    run(scenario)


def test_acks_are_counted_once_and_unknown_checkpoints_ignored() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        assert h.ack(7, "src", 0) is AckResult.SUCCESS
        assert h.ack(7, "src", 0) is AckResult.DUPLICATE
        assert h.ack(99, "src", 0) is AckResult.UNKNOWN
        assert h.coordinator.receive_ack(7, ("nope", 0), TaskAck({}, {}, [])) is AckResult.UNKNOWN
        assert h.log.kinds("metadata") == []
        assert list(h.coordinator.pending) == [7]
        h.coordinator.stop()

    run(scenario)


def test_a_savepoint_queued_when_the_job_finishes_fails_saying_so() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()  # the bounded job's final checkpoint, in progress
        failed: list[str] = []
        h.coordinator.request_savepoint(SavepointTrigger("file:///sp", True, "r1", lambda _: None, failed.append))
        assert failed == [] and list(h.coordinator.pending) == [7], "queued behind the checkpoint"
        h.coordinator.stop(CheckpointFailureReason.JOB_FINISHED)
        assert failed == [CheckpointFailureReason.JOB_FINISHED.value]
        assert "finished" in failed[0]

    run(scenario)


def test_timeout_aborts_discards_and_fails_the_job_beyond_the_tolerable_number() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack(7, "src", 0)
        await until("the abort", lambda: bool(h.log.kinds("abort")))
        assert h.log.kinds("abort") == [7]
        await until("the discard", lambda: bool(h.log.kinds("discard")))
        assert h.log.kinds("metadata") == []
        assert h.failures and "checkpoint 7 failed" in h.failures[0] and "expired" in h.failures[0]
        assert h.stats.failed == 1
        assert h.ack(7, "src", 1) is AckResult.UNKNOWN

    run(scenario, timeout_ms=20, tolerable_failures=0)


def test_decline_aborts_and_only_the_failure_beyond_the_tolerable_number_fails_the_job() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.receive_decline(7, ("sums", 1), "snapshot of 'sums' failed: boom")
        assert h.log.kinds("abort") == [7]
        assert h.failures == []
        h.coordinator.trigger()
        h.coordinator.receive_decline(8, ("src", 0), "again")
        assert h.log.kinds("abort") == [7, 8]
        assert len(h.failures) == 1 and "again" in h.failures[0]
        record = h.stats.history[1]
        assert record.id == 7 and record.status == "FAILED" and "boom" in (record.failure or "")

    run(scenario, tolerable_failures=1)


def test_a_completed_checkpoint_resets_the_consecutive_failures() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.receive_decline(7, ("src", 0), "first")
        h.coordinator.trigger()
        h.ack_all(8)
        await until("completion", lambda: bool(h.log.kinds("notify")))
        h.coordinator.trigger()
        h.coordinator.receive_decline(9, ("src", 0), "second")
        assert h.failures == []

    run(scenario, tolerable_failures=1)


def test_metadata_write_failure_aborts_the_checkpoint_and_counts_as_a_failure() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack_all(7)
        await until("the abort", lambda: bool(h.log.kinds("abort")))
        assert h.log.kinds("notify") == []
        assert len(h.failures) == 1 and "disk full" in h.failures[0]

    run(scenario, fail_metadata=True)


def test_savepoint_writes_into_its_directory_is_not_retained_and_does_not_fail_the_job() -> None:
    async def scenario(h: Harness) -> None:
        pending = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-x", stop=True, request_id="r1")
        assert h.gateway.barriers[0].savepoint_dir == "file:///sp/savepoint-x"
        assert h.gateway.barriers[0].stop
        h.ack_all(pending.id)
        await until("completion", lambda: bool(h.log.kinds("notify")))
        assert h.storage.metadata[7].kind == "savepoint"
        assert h.stats.latest_savepoint is not None
        assert h.stats.latest_savepoint.location == "file:///sp/savepoint-x/_metadata"
        assert h.coordinator.last_completed_location is None
        h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-y")
        h.coordinator.receive_decline(8, ("src", 0), "nope")
        assert h.failures == []

    harness = run(scenario)
    assert harness.log.kinds("retain") == []


def test_an_intermediate_savepoint_notifies_no_task_and_the_next_checkpoint_does() -> None:
    """Flink >= 1.15: only checkpoints and stop-with-savepoint let two-phase-commit sinks commit."""

    async def scenario(h: Harness) -> None:
        savepoint = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-x", request_id="r1")
        h.ack_all(savepoint.id)
        await until("the savepoint's _metadata", lambda: bool(h.log.kinds("metadata")))
        await until("the savepoint's completion", lambda: h.coordinator.pending == {})
        assert h.stats.latest_savepoint is not None
        assert h.log.kinds("notify") == [], "an intermediate savepoint must not commit side effects"
        h.coordinator.trigger()
        h.ack_all(8)
        await until("the checkpoint's completion", lambda: bool(h.log.kinds("notify")))
        assert h.log.kinds("notify") == [8]
        stop = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-y", stop=True, request_id="r2")
        h.ack_all(stop.id)
        await until("the stop-with-savepoint's completion", lambda: len(h.log.kinds("notify")) == 2)
        assert h.log.kinds("notify") == [8, 9], "stop-with-savepoint commits"

    run(scenario)


def test_a_completed_checkpoint_subsumes_older_pending_ones() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.trigger()
        h.ack_all(8)
        await until("completion", lambda: bool(h.log.kinds("notify")))
        assert h.log.kinds("abort") == [7]
        assert h.coordinator.pending == {}
        assert h.failures == []

    run(scenario, max_concurrent=2)


def test_stop_aborts_pending_checkpoints_quietly_and_refuses_new_ones() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.stop()
        assert h.coordinator.pending == {}
        assert h.log.kinds("abort") == []
        with pytest.raises(CheckpointError):
            h.coordinator.trigger()

    run(scenario)


def test_stop_right_after_the_last_ack_completes_the_checkpoint_and_discards_nothing() -> None:
    """The last ack and a stop in the same turn of the loop (a worker killed as it acknowledged).

    The completion is already decided: ``_metadata`` is written and the state files stay. Discarding
    them too left a completed checkpoint whose files were gone, which every restart then failed on.
    """

    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack_all(7)
        h.coordinator.stop()
        assert h.coordinator.background, "the completion still runs after the stop"
        await asyncio.wait(h.coordinator.background, timeout=5)
        assert h.log.kinds("metadata") == [7]
        assert h.log.kinds("discard") == []
        assert h.stats.completed == 1 and h.stats.failed == 0

    run(scenario)


def test_a_decline_after_the_last_ack_cannot_abort_the_completion() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack_all(7)
        h.coordinator.receive_decline(7, ("src", 0), "late")
        await until("completion", lambda: bool(h.log.kinds("notify")))
        assert h.log.kinds("abort") == [] and h.log.kinds("discard") == []
        assert h.log.kinds("metadata") == [7]

    run(scenario)


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
