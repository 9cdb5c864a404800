"""The in-process test kit (``streamjob.worker.testing``): crash and resume a keyed job in a few lines.

``run_in_process`` runs the real JobMaster and slots on one event loop (localhost sockets, the real
protocol and job secret); these tests check exact outputs after an injected crash, an end of input
and a resume, and that the kit's fakes keep their promises.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.environment import StreamExecutionEnvironment
from streamjob.worker.api.functions import KeyedProcessFunction, MapFunction
from streamjob.worker.api.state import ValueStateDescriptor
from streamjob.worker.errors import ConfigError
from streamjob.worker.testing import (
    CommitRecordingSink,
    FakeClock,
    InMemoryStorage,
    JobError,
    TestingSink,
    TestingSource,
    run_in_process,
    run_in_process_async,
)

pytestmark = pytest.mark.unit

ABORT, EOF = TestingSource.ABORT, TestingSource.EOF


def running_sums(source: TestingSource, sink: TestingSink) -> StreamExecutionEnvironment:
    """A keyed job: the running sum per key of (key, value) records."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_source(source).key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1])).uid("sums").add_sink(
        sink
    ).uid("out")
    return env


def expected_sums(records: list[Any]) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    out = []
    for key, value in records:
        totals[key] += value
        out.append((key, totals[key]))
    return sorted(out)


RECORDS = [(k, v) for v in range(1, 31) for k in ("a", "b", "c")]


def test_crash_and_resume_gives_the_exact_output() -> None:
    out: list[Any] = []
    result = run_in_process(
        running_sums(TestingSource([*RECORDS[:40], ABORT, *RECORDS[40:]]), TestingSink(out)), parallelism=2
    )
    assert result.restarts == 1 and result.attempts == 2
    assert "TestingSource.ABORT at item 40" in result.failures[0]
    assert sorted(tuple(r) for r in out) == expected_sums(RECORDS)  # nothing lost, nothing twice


def test_two_aborts_restart_twice() -> None:
    out: list[Any] = []
    items = [*RECORDS[:10], ABORT, *RECORDS[10:50], ABORT, *RECORDS[50:]]
    result = run_in_process(running_sums(TestingSource(items, batch_size=4), TestingSink(out)), parallelism=2)
    assert result.restarts == 2
    assert sorted(tuple(r) for r in out) == expected_sums(RECORDS)


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_eof_ends_the_run_and_a_restore_reads_on(tmp_path: Path, kind: str) -> None:
    storage: InMemoryStorage | Path = (
        InMemoryStorage((tmp_path / "named-only").as_uri()) if kind == "memory" else tmp_path / "checkpoints"
    )
    out: list[Any] = []
    source = TestingSource([*RECORDS[:30], EOF, *RECORDS[30:]])
    first = run_in_process(running_sums(source, TestingSink(out)), parallelism=2, storage=storage)
    assert first.state == "FINISHED" and first.restarts == 0
    assert sorted(tuple(r) for r in out) == expected_sums(RECORDS[:30])
    if isinstance(storage, InMemoryStorage):
        assert not (tmp_path / "named-only").exists()  # the URI only names the keys
        assert any(k.endswith(f"/{first.job_id}/_lineage.json") for k in storage.object_uris())
        assert any(k.endswith("/_metadata") and "/chk-" in k for k in storage.object_uris())
    out.clear()
    second = run_in_process(running_sums(source, TestingSink(out)), parallelism=2, storage=storage, restore="latest")
    assert second.job_id == first.job_id  # the same lineage, its keyed state restored
    assert sorted(tuple(r) for r in out) == sorted(set(expected_sums(RECORDS)) - set(expected_sums(RECORDS[:30])))


def test_commit_recording_sink_sees_each_commit() -> None:
    out: list[Any] = []
    commits: list[list[Any]] = []
    run_in_process(running_sums(TestingSource(RECORDS), CommitRecordingSink(out, commits)), parallelism=2)
    assert commits and [r for batch in commits for r in batch] == out
    assert sorted(tuple(r) for r in out) == expected_sums(RECORDS)


def test_a_job_that_keeps_failing_raises_with_the_reason() -> None:
    items = [("a", 1), ABORT, ABORT, ABORT]
    with pytest.raises(JobError, match="ABORT"):
        run_in_process(running_sums(TestingSource(items), TestingSink([])), max_restarts=1)


def test_a_crash_after_a_restore_resumes_from_the_restored_checkpoint(tmp_path: Path) -> None:
    source = TestingSource([*RECORDS[:30], EOF, *RECORDS[30:60], ABORT, *RECORDS[60:]])
    sink = TestingSink([])
    run_in_process(running_sums(source, sink), parallelism=2, storage=tmp_path)
    resumed = run_in_process(running_sums(source, sink), parallelism=2, storage=tmp_path, restore="latest")
    running = [data for kind, data in resumed.events if kind == "running"]
    assert resumed.restarts == 1 and len(running) == 2
    assert all(data["checkpoint"] is not None for data in running)  # both attempts restored a checkpoint
    assert sorted(tuple(r) for r in sink.out) == expected_sums(RECORDS)


def test_testing_source_positions_and_markers() -> None:
    from streamjob.worker.api.sources import SourceReaderContext
    from streamjob.worker.testing import TestingAbort

    source = TestingSource([1, 2, EOF, 3, ABORT, 4], batch_size=5)
    ctx = SourceReaderContext(0, 1, 0)
    reader = source.create_reader(ctx, None)
    assert reader.poll(100) == [1, 2] and reader.poll(100) is None and reader.snapshot() == [3]
    reader = source.create_reader(ctx, [3])
    assert reader.poll(100) == [3]
    with pytest.raises(TestingAbort):
        reader.poll(100)
    again = source.create_reader(ctx, [3])  # a restore: the fired marker is skipped
    assert again.poll(100) == [3] and again.poll(100) == [4] and again.poll(100) is None
    fresh = TestingSource([ABORT, 1])  # a fresh source in attempt 1 (real processes): ABORT 0 fired in attempt 0
    assert fresh.create_reader(SourceReaderContext(0, 1, 1), None).poll(10) == [1]
    with pytest.raises(ValueError, match="batch_size"):
        TestingSource([], batch_size=0)
    with pytest.raises(ValueError, match="position 9"):
        source.create_reader(ctx, [9])


class CountThenReport(KeyedProcessFunction[str, tuple[str, int], tuple[str, int, int]]):
    """Counts a key's records; one second (processing time) after its first, emits (key, count, time)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        if value[0] == "tick":  # the test's signal that the input before it was processed: let time pass
            self.clock.advance(value[1])
            return
        seen = self.count.value() or 0
        if seen == 0:
            ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + 1000)
        self.count.update(seen + 1)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect((ctx.get_current_key(), self.count.value(), timestamp))


def test_fake_clock_drives_processing_time_timers() -> None:
    clock = FakeClock(start_ms=5_000)
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    items = [("a", 1), ("b", 1), ("a", 1), ("tick", 999), ("b", 1), ("tick", 1)]
    env.from_source(TestingSource(items)).key_by(lambda r: r[0]).process(CountThenReport(clock)).uid("count").add_sink(
        TestingSink(out)
    )
    run_in_process(env, parallelism=1, clock=clock)
    # Timers were set at 5000 + 1000 on the fake clock and fired when it reached 6000, not before (999).
    assert sorted(tuple(r) for r in out) == [("a", 2, 6_000), ("b", 2, 6_000)]
    assert clock() == 6_000


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock(10)
    assert clock.advance(5) == 15 and clock.set(20) == 20
    with pytest.raises(ValueError, match="back"):
        clock.set(19)
    with pytest.raises(ValueError, match="advance"):
        clock.advance(-1)


def test_bad_arguments_are_one_clear_error() -> None:
    env = running_sums(TestingSource(RECORDS), TestingSink([]))
    with pytest.raises(ConfigError, match="parallelism"):
        run_in_process(env, parallelism=0)
    with pytest.raises(ValueError, match="max_restarts"):
        run_in_process(env, max_restarts=-1)
    with pytest.raises(TypeError, match="list"):
        TestingSink(())  # type: ignore[arg-type]

    async def inside_a_loop() -> None:
        with pytest.raises(RuntimeError, match="run_in_process_async"):
            run_in_process(env)

    asyncio.run(inside_a_loop())


def test_the_async_variant_runs_on_the_callers_loop() -> None:
    out: list[Any] = []
    result = asyncio.run(
        run_in_process_async(running_sums(TestingSource(RECORDS[:9]), TestingSink(out)), parallelism=2)
    )
    assert result.state == "FINISHED" and sorted(tuple(r) for r in out) == expected_sums(RECORDS[:9])


def test_in_memory_views_serve_a_checkpoint_round_trip() -> None:
    """The storage views over memory: what a task writes, the coordinator completes, the JobMaster finds."""
    from streamjob.worker.snapshot.metadata import CheckpointMetadata

    worker, coordinator, job = InMemoryStorage().views(job_id="j1")
    cid = coordinator.next_checkpoint_id()
    writer = worker.writer(cid, "sums", 0)
    handle = writer.write("state", b"payload")
    writer.flush()
    meta = CheckpointMetadata(
        kind="checkpoint",
        checkpoint_id=cid,
        job_id="j1",
        job_name="in-process",
        namespace="local",
        trigger_timestamp_ms=1,
        completion_timestamp_ms=2,
        duration_ms=1,
        total_size=7,
        max_parallelism=128,
        mode="EXACTLY_ONCE",
    )
    location = coordinator.write_metadata(meta)
    found = job.latest_retained()
    assert found is not None and found.metadata_uri == location and found.checkpoint_id == cid
    assert worker.reader(worker.checkpoint_base_uri).read(handle) == b"payload"
    assert coordinator.next_checkpoint_id() == cid + 1


class HoldsALock(MapFunction[Any, Any]):
    def __init__(self) -> None:
        self.lock = threading.Lock()  # made in the constructor: no slot could build its own copy

    def map(self, value: Any) -> Any:
        return value


def test_a_pipeline_that_cannot_be_copied_fails_once_with_the_fix() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_source(TestingSource(RECORDS)).map(HoldsALock()).add_sink(TestingSink([]))
    with pytest.raises(JobError, match=r"copy\.deepcopy failed.*open\(\)") as caught:
        run_in_process(env, max_restarts=3)
    assert "(1 failed attempts)" in str(caught.value)  # final at once: a restart would copy the same pipeline


def test_testing_sink_keeps_the_two_phase_commit_contract() -> None:
    out: list[Any] = []
    sink = TestingSink(out)
    committed_before_crash = sink.begin_transaction()
    sink.invoke_batch(committed_before_crash, [1, 2])
    sink.pre_commit(committed_before_crash)
    open_at_crash = sink.begin_transaction()
    sink.invoke(open_at_crash, 3)
    assert out == []  # nothing is visible before a commit
    # the attempt crashed after the checkpoint completed but before it committed; a new sink (a restored
    # attempt, or a later run) finds both handles in the restored state:
    restored = TestingSink(out)
    restored.recover_and_commit(committed_before_crash)
    restored.recover_and_abort(open_at_crash)
    restored.commit(committed_before_crash)  # again: a no-op
    assert out == [1, 2]
    with pytest.raises(RuntimeError, match="unknown to this process"):
        restored.commit(open_at_crash)  # aborted: its records are gone and never appear
    assert out == [1, 2]
