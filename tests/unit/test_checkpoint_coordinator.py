"""The checkpoint coordinator's wiring, against fakes of every collaborator and a fake clock.

Time moves only in ``FakeClock.advance`` (timeouts and periodic triggers are its timers); the
executor runs storage calls inline, so every scenario is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.checkpoint.acks import TaskAck
from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator, CoordinatorParts
from streamjob.worker.checkpoint.decider import SavepointTrigger, TriggerDecider
from streamjob.worker.checkpoint.failures import CheckpointFailureManager, CheckpointFailureReason
from streamjob.worker.checkpoint.finalize import JobDescription
from streamjob.worker.checkpoint.pending import AckResult, PendingCheckpoint
from streamjob.worker.checkpoint.stats import CheckpointRecord, CheckpointStats
from streamjob.worker.checkpoint.store import CompletedCheckpointStore
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.errors import CheckpointError
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.protocol.rest import CheckpointKind, CheckpointStatus
from streamjob.worker.snapshot.handles import StateHandle
from tests.unit.checkpoint_fakes import FakeClock, FakeGateway, FakeStorage, InlineExecutor, Log, until

pytestmark = pytest.mark.unit


def small_graph() -> JobGraph:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.from_sequence(1, 10).uid("src").key_by(lambda x: x % 2).reduce(lambda a, b: a + b).uid("sums").add_sink(
        DiscardingSink()
    ).uid("sink")
    return build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)


class Harness:
    def __init__(self, *, fail_metadata: bool = False, **knobs: Any) -> None:
        self.log = Log()
        self.settings = CheckpointSettings(**knobs)
        self.gateway = FakeGateway(self.log)
        self.storage = FakeStorage(self.log, fail_metadata=fail_metadata)
        self.clock = FakeClock()
        self.graph = small_graph()
        self.stats = CheckpointStats()
        self.failure_manager = CheckpointFailureManager(self.settings.tolerable_failures)
        self.store = CompletedCheckpointStore(
            retained=self.settings.retained, storage=self.storage, executor=InlineExecutor()
        )
        self.job_failures: list[str] = []
        self.completed: list[CompletedCheckpoint] = []
        self.failed: list[tuple[int, str]] = []
        parts = CoordinatorParts(
            settings=self.settings,
            job=JobDescription(self.graph, "j1", "unit", "local", self.settings.mode),
            storage=self.storage,
            gateway=self.gateway,
            decider=TriggerDecider(self.settings),
            failures=self.failure_manager,
            store=self.store,
            stats=self.stats,
            clock=self.clock,
            executor=InlineExecutor(),
        )
        self.coordinator = CheckpointCoordinator(parts, first_id=7, on_job_failure=self.job_failures.append)
        self.coordinator.completed_listeners.append(lambda c, _: self.completed.append(c))
        self.coordinator.failed_listeners.append(lambda p, why: self.failed.append((p.id, why)))

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

    async def complete(self, checkpoint_id: int) -> None:
        self.ack_all(checkpoint_id)
        await until(f"checkpoint {checkpoint_id}'s completion", lambda: checkpoint_id not in self.coordinator.pending)


def run(test: Callable[[Harness], Coroutine[Any, Any, None]], **knobs: Any) -> Harness:
    harness = Harness(**knobs)
    asyncio.run(test(harness))
    return harness


# -- completion ------------------------------------------------------------------------------------


def test_completion_writes_metadata_then_notifies_then_runs_retention() -> None:
    async def scenario(h: Harness) -> None:
        pending = h.coordinator.trigger()
        assert pending.id == 7
        assert h.gateway.barriers == [Barrier(7, h.clock.now_ms())]
        await h.complete(7)
        await until("retention", lambda: bool(h.log.kinds("list")))
        assert h.log.events == [("trigger", 7), ("metadata", 7), ("notify", 7), ("list", [7])]
        meta = h.storage.metadata[7]
        assert meta.kind == "checkpoint" and meta.job_id == "j1"
        assert set(meta.operators) == {"src", "sums", "sink"}
        assert [s.subtask_index for s in meta.operators["src"].subtasks] == [0, 1]
        assert meta.total_size == 40
        assert meta.source_positions == {"src": [[[0]], [[1]]]}
        assert h.coordinator.pending == {}
        assert h.store.latest is not None and h.store.latest.location == "file:///ck/chk-7/_metadata"
        assert [c.id for c in h.completed] == [7]
        assert h.stats.completed == 1 and h.stats.failed == 0
        assert h.job_failures == []

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
        assert record.status is CheckpointStatus.COMPLETED and record.kind is CheckpointKind.CHECKPOINT
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


def test_a_completed_checkpoint_subsumes_older_pending_ones_without_counting_a_failure() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.trigger()
        await h.complete(8)
        assert h.log.kinds("abort") == [7]
        assert h.failed == [(7, CheckpointFailureReason.SUBSUMED.value)]
        assert h.coordinator.pending == {}
        assert h.failure_manager.consecutive == 0 and h.job_failures == []

    run(scenario, max_concurrent=2)


# -- timeouts, declines and the failure manager (fake clock) ---------------------------------------


def test_a_timeout_aborts_with_its_reason_and_the_failure_manager_counts_it() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack(7, "src", 0)
        h.clock.advance(0.999)
        assert h.log.kinds("abort") == [] and list(h.coordinator.pending) == [7], "not yet expired"
        h.clock.advance(0.001)
        assert h.log.kinds("abort") == [7]
        assert h.log.kinds("discard") == [7]
        assert h.log.kinds("metadata") == []
        assert h.failure_manager.consecutive == 1
        assert h.job_failures == [], "one failure is tolerated"
        record = h.stats.history[0]
        assert record.status is CheckpointStatus.FAILED and record.duration_ms == 1000
        assert record.failure == CheckpointFailureReason.TIMEOUT.value
        assert h.ack(7, "src", 1) is AckResult.UNKNOWN

    run(scenario, timeout_ms=1000, tolerable_failures=1)


def test_failures_beyond_the_tolerable_number_fail_the_job_with_the_last_reason() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.clock.advance(1.0)
        h.coordinator.trigger()
        h.coordinator.receive_decline(8, ("sums", 1), "snapshot of 'sums' failed: boom")
        assert h.failure_manager.consecutive == 2 and h.job_failures == []
        h.coordinator.trigger()
        h.clock.advance(1.0)
        assert h.failure_manager.consecutive == 3
        assert len(h.job_failures) == 1
        assert "checkpoint 9 failed and more than 2 consecutive" in h.job_failures[0]
        assert "expired" in h.job_failures[0]
        assert [r.failure for r in h.stats.history][
            1
        ] == "a task declined the checkpoint: snapshot of 'sums' failed: boom"

    run(scenario, timeout_ms=1000, tolerable_failures=2)


def test_a_completed_checkpoint_resets_the_consecutive_failures() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.receive_decline(7, ("src", 0), "first")
        h.coordinator.trigger()
        await h.complete(8)
        assert h.failure_manager.consecutive == 0
        h.coordinator.trigger()
        h.coordinator.receive_decline(9, ("src", 0), "second")
        assert h.job_failures == []

    run(scenario, tolerable_failures=1)


def test_subsumed_declines_and_savepoint_failures_never_fail_the_job() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.receive_decline(7, ("src", 0), "overtaken", subsumed=True)
        h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-y")
        h.coordinator.receive_decline(8, ("src", 0), "nope")
        h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-z")
        h.clock.advance(1.0)
        assert h.log.kinds("abort") == [7, 8, 9]
        assert h.failure_manager.consecutive == 0 and h.job_failures == []

    run(scenario, timeout_ms=1000, tolerable_failures=0)


def test_a_metadata_write_failure_aborts_the_checkpoint_and_counts_as_a_failure() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack_all(7)
        await until("the abort", lambda: bool(h.log.kinds("abort")))
        assert h.log.kinds("notify") == [] and h.completed == []
        assert h.failed == [(7, "writing the checkpoint to storage failed: disk full")]
        assert len(h.job_failures) == 1 and "disk full" in h.job_failures[0]

    run(scenario, fail_metadata=True)


def test_a_decline_or_timeout_after_the_last_ack_cannot_abort_the_completion() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.ack_all(7)
        h.coordinator.receive_decline(7, ("src", 0), "late")
        h.clock.advance(60.0)
        await until("completion", lambda: bool(h.log.kinds("notify")))
        assert h.log.kinds("abort") == [] and h.log.kinds("discard") == []
        assert h.log.kinds("metadata") == [7]

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


def test_stop_aborts_pending_checkpoints_quietly_and_refuses_new_ones() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.trigger()
        h.coordinator.stop()
        assert h.coordinator.pending == {}
        assert h.log.kinds("abort") == [] and h.log.kinds("discard") == [7]
        assert h.clock.pending_timers() == [], "no timeout or periodic timer outlives the stop"
        with pytest.raises(CheckpointError):
            h.coordinator.trigger()
        assert h.job_failures == []

    run(scenario, interval_ms=1000, tolerable_failures=0)


# -- periodic triggering (fake clock) ----------------------------------------------------------------


def test_periodic_checkpoints_follow_the_interval_from_the_clock() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.start()
        h.clock.advance(0.999)
        assert h.log.kinds("trigger") == []
        h.clock.advance(0.001)
        assert h.log.kinds("trigger") == [7]
        h.clock.advance(0.4)
        await h.complete(7)
        h.clock.advance(0.599)
        assert h.log.kinds("trigger") == [7], "the next one is one interval after the previous trigger"
        h.clock.advance(0.001)
        assert h.log.kinds("trigger") == [7, 8]
        h.coordinator.stop()

    run(scenario, interval_ms=1000)


def test_min_pause_counts_from_the_end_of_the_previous_checkpoint() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.start()
        h.clock.advance(1.0)
        h.clock.advance(0.8)
        await h.complete(7)
        h.clock.advance(0.499)
        assert h.log.kinds("trigger") == [7]
        h.clock.advance(0.001)
        assert h.log.kinds("trigger") == [7, 8]
        h.coordinator.stop()

    run(scenario, interval_ms=1000, min_pause_ms=500)


def test_no_periodic_checkpoint_starts_after_a_stop_with_savepoint_completed() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.start()
        pending = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-x", stop=True, request_id="r1")
        h.clock.advance(5.0)
        assert h.log.kinds("trigger") == [7], "nothing starts while a stop-with-savepoint runs"
        await h.complete(pending.id)
        h.clock.advance(5.0)
        assert h.log.kinds("trigger") == [7]
        assert h.clock.pending_timers() == []

    run(scenario, interval_ms=1000, timeout_ms=60_000)


# -- savepoints --------------------------------------------------------------------------------------


def test_a_savepoint_waits_for_the_checkpoint_in_progress_then_runs_alone() -> None:
    async def scenario(h: Harness) -> None:
        h.coordinator.start()
        h.clock.advance(1.0)
        triggered: list[PendingCheckpoint] = []
        failed: list[str] = []
        h.coordinator.request_savepoint(SavepointTrigger("file:///sp/x", False, "r1", triggered.append, failed.append))
        assert triggered == [] and list(h.coordinator.pending) == [7], "queued behind checkpoint 7"
        await h.complete(7)
        assert [p.id for p in triggered] == [8] and h.gateway.barriers[-1].savepoint_dir == "file:///sp/x"
        h.clock.advance(10.0)
        assert h.log.kinds("trigger") == [7, 8], "no periodic checkpoint while the savepoint runs"
        await h.complete(8)
        assert h.log.kinds("notify") == [7], "an intermediate savepoint commits nothing"
        h.clock.advance(1.0)
        assert h.log.kinds("trigger") == [7, 8, 9]
        assert failed == []
        h.coordinator.stop()

    run(scenario, interval_ms=1000, timeout_ms=60_000)


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


def test_a_savepoint_writes_into_its_directory_and_is_kept_by_the_store_not_retained() -> None:
    async def scenario(h: Harness) -> None:
        pending = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-x", stop=True, request_id="r1")
        assert h.gateway.barriers[0].savepoint_dir == "file:///sp/savepoint-x"
        assert h.gateway.barriers[0].stop
        await h.complete(pending.id)
        assert h.storage.metadata[7].kind == "savepoint"
        assert h.log.kinds("notify") == [7], "stop-with-savepoint commits"
        assert h.stats.latest_savepoint is not None
        assert h.stats.latest_savepoint.location == "file:///sp/savepoint-x/_metadata"
        assert [c.request_id for c in h.store.savepoints] == ["r1"]
        assert h.store.latest is None

    harness = run(scenario)
    assert harness.log.kinds("list") == [], "savepoints start no retention"


def test_an_intermediate_savepoint_notifies_no_task_and_the_next_checkpoint_does() -> None:
    """Flink >= 1.15: only checkpoints and stop-with-savepoint let two-phase-commit sinks commit."""

    async def scenario(h: Harness) -> None:
        savepoint = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-x", request_id="r1")
        await h.complete(savepoint.id)
        assert h.stats.latest_savepoint is not None
        assert h.log.kinds("notify") == [], "an intermediate savepoint must not commit side effects"
        h.coordinator.trigger()
        await h.complete(8)
        assert h.log.kinds("notify") == [8]
        stop = h.coordinator.trigger(savepoint_dir="file:///sp/savepoint-y", stop=True, request_id="r2")
        await h.complete(stop.id)
        assert h.log.kinds("notify") == [8, 9], "stop-with-savepoint commits"

    run(scenario)


def test_for_job_assembles_the_real_collaborators_from_the_jobmasters_arguments() -> None:
    async def scenario() -> None:
        log = Log()
        settings = CheckpointSettings(retained=2, tolerable_failures=4)
        coordinator = CheckpointCoordinator.for_job(
            settings=settings,
            storage=FakeStorage(log),
            graph=small_graph(),
            job={"job_id": "j9", "name": "n", "namespace": "ns", "restored_from": "file:///old/_metadata"},
            gateway=FakeGateway(log),
            executor=InlineExecutor(),
            on_job_failure=lambda _: None,
            first_id=3,
            stats=CheckpointStats(),
        )
        assert coordinator.store.retained == 2
        assert coordinator.failures.tolerable == 4
        assert coordinator.parts.job.restored_from == "file:///old/_metadata"
        assert coordinator.trigger().id == 3
        coordinator.stop()

    asyncio.run(scenario())


def test_records_hold_enums_with_the_wire_strings_and_refuse_unknown_ones() -> None:
    record = CheckpointRecord(4, "savepoint", "FAILED", 1, 2)  # type: ignore[arg-type]
    assert record.kind is CheckpointKind.SAVEPOINT and record.status is CheckpointStatus.FAILED
    assert CheckpointStats().to_json(0)["history"] == []
    stats = CheckpointStats()
    stats.record(record)
    assert stats.to_json(0)["history"][0]["kind"] == "savepoint" and stats.failed == 1
    with pytest.raises(ValueError, match="'done' is not a valid CheckpointStatus"):
        CheckpointRecord(4, CheckpointKind.CHECKPOINT, "done", 1, 2)  # type: ignore[arg-type]
