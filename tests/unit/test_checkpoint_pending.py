"""``PendingCheckpoint``: acknowledgements, ``finalize`` into a frozen ``CompletedCheckpoint``, ``abort``."""

from __future__ import annotations

import dataclasses

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.checkpoint.acks import TaskAck
from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.failures import CheckpointFailureReason
from streamjob.worker.checkpoint.finalize import JobDescription
from streamjob.worker.checkpoint.pending import AckResult, PendingCheckpoint, PendingState
from streamjob.worker.errors import StorageError
from streamjob.worker.graph.job_graph import build_job_graph
from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.snapshot.handles import StateHandle
from tests.unit.checkpoint_fakes import FakeStorage, Log

pytestmark = pytest.mark.unit


def job() -> JobDescription:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.from_sequence(1, 10).uid("src").key_by(lambda x: x % 2).reduce(lambda a, b: a + b).uid("sums").add_sink(
        DiscardingSink()
    ).uid("sink")
    graph = build_job_graph(env.transformations, default_parallelism=2, max_parallelism=128)
    return JobDescription(graph, "j1", "unit", "local", "EXACTLY_ONCE", restored_from="file:///old/chk-3/_metadata")


def pending_for(
    description: JobDescription, *, savepoint_dir: str | None = None, stop: bool = False
) -> PendingCheckpoint:
    tasks = frozenset(description.graph.subtasks())
    return PendingCheckpoint(5, 1_000, 10.0, tasks, savepoint_dir, stop, False, "r1" if savepoint_dir else None)


def ack_for(description: JobDescription, vertex: str, subtask: int) -> TaskAck:
    keyed = StateHandle(path=f"chk-5/{vertex}/{subtask}/keyed", size=7, sha256="0" * 64, key_group_start=0)
    shared = StateHandle(path=f"shared/{vertex}-{subtask}", size=3, sha256="1" * 64, shared=True)
    head = description.graph.vertex(vertex).operators[0].effective_uid()
    return TaskAck(
        {head: {"keyed": [keyed, shared]}}, {"sync_ms": float(subtask), "cpu_ms": 0.25}, [f"{vertex}@{subtask}"]
    )


def state_of(pending: PendingCheckpoint) -> PendingState:
    return pending.state


def ack_all(pending: PendingCheckpoint, description: JobDescription) -> None:
    for vertex, subtask in sorted(pending.tasks):
        assert pending.acknowledge((vertex, subtask), ack_for(description, vertex, subtask)) is AckResult.SUCCESS


def test_the_last_acknowledgement_makes_it_acknowledged_and_past_aborting() -> None:
    description = job()
    pending = pending_for(description)
    *first, last = sorted(pending.tasks)
    for task in first:
        pending.acknowledge(task, ack_for(description, *task))
    assert pending.state is PendingState.IN_PROGRESS and not pending.fully_acknowledged
    assert pending.missing() == [last]
    assert pending.acknowledge(last, ack_for(description, *last)) is AckResult.SUCCESS
    assert pending.fully_acknowledged
    assert pending.abort(CheckpointFailureReason.TIMEOUT) is None, "its _metadata is about to be written"
    assert pending.state is PendingState.ACKNOWLEDGED
    assert pending.acknowledge(last, ack_for(description, *last)) is AckResult.DUPLICATE
    assert pending.acknowledge(("nope", 0), ack_for(description, *last)) is AckResult.UNKNOWN


def test_finalize_writes_the_metadata_and_returns_a_frozen_completed_checkpoint() -> None:
    description, storage = job(), FakeStorage(Log())
    pending = pending_for(description)
    ack_all(pending, description)
    completed = pending.finalize(description, storage, completion_ms=1_250)
    assert pending.state is PendingState.COMPLETED
    assert completed == CompletedCheckpoint(
        id=5,
        kind=CheckpointKind.CHECKPOINT,
        trigger_ms=1_000,
        completion_ms=1_250,
        size=len(pending.tasks) * 10,
        location="file:///ck/chk-5/_metadata",
        phases=completed.phases,
        incremental_size=len(pending.tasks) * 10,
        shared_files=frozenset(f"shared/{v}-{i}" for v, i in pending.tasks),
    )
    assert completed.duration_ms == 250 and completed.directory == "file:///ck/chk-5"
    assert completed.phases.sync_ms == 1.0 and completed.phases.cpu_ms == 0.25 * len(pending.tasks)
    with pytest.raises(dataclasses.FrozenInstanceError):
        completed.size = 0  # type: ignore[misc]
    meta = storage.metadata[5]
    assert (meta.kind, meta.checkpoint_id, meta.job_id, meta.mode) == ("checkpoint", 5, "j1", "EXACTLY_ONCE")
    assert meta.restored_from == "file:///old/chk-3/_metadata"
    assert (meta.trigger_timestamp_ms, meta.completion_timestamp_ms, meta.duration_ms) == (1_000, 1_250, 250)
    assert meta.total_size == completed.size
    assert meta.shared_files == sorted(f"shared/{v}-{i}" for v, i in pending.tasks)
    assert meta.source_positions == {"src": [["src@0"], ["src@1"]]}
    assert [len(s.keyed) for s in meta.operators["sums"].subtasks] == [2, 2]
    assert meta.operators["sink"].subtasks[0].keyed == [], "only the head operator of a task acknowledged state"
    assert pending.abort(CheckpointFailureReason.JOB_STOPPING) is None
    with pytest.raises(RuntimeError, match="checkpoint 5 cannot be finalized: it is completed"):
        pending.finalize(description, storage, completion_ms=2_000)


def test_the_incremental_size_counts_private_files_and_shared_files_the_previous_checkpoint_lacked() -> None:
    description = job()
    pending = pending_for(description)
    ack_all(pending, description)
    tasks = sorted(pending.tasks)
    reused = frozenset(f"shared/{v}-{i}" for v, i in tasks[1:]) | {"shared/gone"}
    completed = pending.finalize(description, FakeStorage(Log()), completion_ms=1_250, referenced=reused)
    assert completed.size == len(tasks) * 10, "the full size counts every referenced file"
    assert completed.incremental_size == len(tasks) * 7 + 3, "only the first task's shared file is new"
    assert completed.shared_files == frozenset(f"shared/{v}-{i}" for v, i in tasks)


def test_finalize_before_every_task_acknowledged_is_refused() -> None:
    description = job()
    pending = pending_for(description)
    pending.acknowledge(("src", 0), ack_for(description, "src", 0))
    with pytest.raises(RuntimeError, match="it is in progress"):
        pending.finalize(description, FakeStorage(Log()), completion_ms=2_000)


def test_a_failed_metadata_write_raises_and_then_the_checkpoint_can_be_aborted() -> None:
    description, log = job(), Log()
    pending = pending_for(description)
    ack_all(pending, description)
    with pytest.raises(StorageError, match="disk full"):
        pending.finalize(description, FakeStorage(log, fail_metadata=True), completion_ms=2_000)
    assert state_of(pending) is PendingState.FINALIZE_FAILED
    failure = pending.abort(CheckpointFailureReason.STORAGE, "disk full")
    assert failure is not None and failure.checkpoint_id == 5 and failure.trigger_ms == 1_000
    assert failure.message == "writing the checkpoint to storage failed: disk full"
    assert state_of(pending) is PendingState.ABORTED


def test_abort_ends_it_once_and_later_acks_are_discarded() -> None:
    description = job()
    pending = pending_for(description, savepoint_dir="file:///sp/savepoint-a")
    failure = pending.abort(CheckpointFailureReason.DECLINED)
    assert failure is not None and failure.is_savepoint and failure.kind is CheckpointKind.SAVEPOINT
    assert failure.message == "a task declined the checkpoint"
    assert pending.abort(CheckpointFailureReason.TIMEOUT) is None, "an abort happens once"
    assert pending.acknowledge(("src", 0), ack_for(description, "src", 0)) is AckResult.DISCARDED
    assert pending.acks == {}
    with pytest.raises(RuntimeError, match="aborted"):
        pending.finalize(description, FakeStorage(Log()), completion_ms=2_000)


@pytest.mark.parametrize(("stop", "commits"), [(False, False), (True, True)])
def test_a_savepoint_completes_into_its_directory_and_commits_only_when_it_stops_the_job(
    stop: bool, commits: bool
) -> None:
    description = job()
    pending = pending_for(description, savepoint_dir="file:///sp/savepoint-a", stop=stop)
    assert pending.commits_side_effects is commits
    ack_all(pending, description)
    completed = pending.finalize(description, FakeStorage(Log()), completion_ms=3_000)
    assert completed.is_savepoint and completed.location == "file:///sp/savepoint-a/_metadata"
    assert (completed.stop, completed.request_id, completed.commits_side_effects) == (stop, "r1", commits)
    assert completed.directory == "file:///sp/savepoint-a"
