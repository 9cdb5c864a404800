"""``SubtaskCheckpointer`` (``runtime/subtask_checkpointer.py``) against a fake chain, storage and clock.

The phases run in order (sync snapshot, forward, prepare, write, ack), the acknowledgement
carries the handles, durations and counters, and every failure becomes a decline with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from streamjob.worker.errors import SerializationError
from streamjob.worker.protocol.events import Barrier, EndOfStream
from streamjob.worker.protocol.messages import Ack, Decline, TaskFailed, ToJobMaster
from streamjob.worker.runtime.barriers import InFlightCapture
from streamjob.worker.runtime.inline_writes import InlineWritePolicy
from streamjob.worker.runtime.subtask_checkpointer import (
    PREPARE_BUDGET_S,
    SnapshotIo,
    SubtaskCheckpointer,
    SubtaskIdentity,
)
from streamjob.worker.snapshot.handles import SnapshotWriter, StateHandle
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.state.snapshot_runner import SnapshotRunner
from tests.unit.runtime_support import FakeClock, FakeStorage, InlineExecutor, kinds

pytestmark = pytest.mark.unit

SnapshotFn = SnapshotRunner[dict[str, list[StateHandle]]]


class FakeOperator:
    """An operator whose snapshot writes ``payload`` after ``steps`` preparation steps."""

    def __init__(
        self, uid: str, chain: FakeChain, payload: bytes, *, steps: int = 0, fail: Exception | None = None
    ) -> None:
        self.uid = uid
        self.chain = chain
        self.payload = payload
        self.steps = steps
        self.fail = fail
        self.prepared_steps = 0
        self.completed: list[int] = []
        self.aborted: list[int] = []

    def snapshot(self, checkpoint_id: int, timestamp_ms: int) -> SnapshotFn:
        self.chain.log.append(("snapshot", self.uid, checkpoint_id, timestamp_ms))
        self.chain.clock.advance(0.003, cpu=0.001)  # the synchronous part takes 3 ms
        if self.fail is not None:
            raise self.fail

        def write(writer: SnapshotWriter) -> dict[str, list[StateHandle]]:
            return {"keyed": [], "operator": [writer.write("op", self.payload)]}

        def steps() -> Iterator[None]:
            for _ in range(self.steps):
                self.prepared_steps += 1
                yield

        return SnapshotRunner(write, steps() if self.steps else None, lambda: len(self.payload))

    def notify_complete(self, checkpoint_id: int) -> None:
        self.completed.append(checkpoint_id)

    def notify_aborted(self, checkpoint_id: int) -> None:
        self.aborted.append(checkpoint_id)


class FakeChain:
    """The task as the checkpointer sees it: operators, counters, outputs and positions."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.log: list[tuple[Any, ...]] = []
        self.ops: list[FakeOperator] = []
        self.records_in = 0
        self.records_out = 0

    @property
    def operators(self) -> list[FakeOperator]:
        return self.ops

    def broadcast(self, event: Barrier | EndOfStream) -> None:
        self.log.append(("forward", event))

    def positions(self) -> list[Any]:
        return [("split-0", self.records_in)]


class Setup:
    def __init__(self, *, inline: bool = False, fail_write: Exception | None = None) -> None:
        self.clock = FakeClock()
        self.chain = FakeChain(self.clock)
        self.storage = FakeStorage(fail=fail_write)
        self.sent: list[ToJobMaster] = []
        io = SnapshotIo(
            self.storage, InlineExecutor(), record_types=(), inline_writes=InlineWritePolicy(local_disk=inline)
        )
        self.checkpointer = SubtaskCheckpointer(
            SubtaskIdentity("v1", 0, "map (1/1)"), self.chain, io, send=self.sent.append, clock=self.clock
        )

    def add(self, uid: str, payload: bytes = b"state", **kw: Any) -> FakeOperator:
        op = FakeOperator(uid, self.chain, payload, **kw)
        self.chain.ops.append(op)
        return op


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_sync_snapshot_comes_before_the_barrier_is_forwarded_and_the_ack_after_the_write() -> None:
    async def scenario() -> Setup:
        s = Setup()
        s.add("head", b"aaaa")
        s.add("sink", b"bb")
        barrier = Barrier(7, 123_456)
        assert s.checkpointer.checkpoint(barrier, 0.25, None)
        assert s.chain.log == [("snapshot", "head", 7, 123_456), ("snapshot", "sink", 7, 123_456), ("forward", barrier)]
        assert s.sent == []  # the write runs on the I/O thread, after the barrier went on
        s.chain.records_in, s.chain.records_out = 40, 30  # the task went on processing meanwhile
        s.clock.advance(0.010)
        await settle()
        return s

    s = run(scenario())
    assert kinds(s.sent) == ["Ack"]
    ack = s.sent[0]
    assert isinstance(ack, Ack)
    assert (ack.cp, ack.vertex, ack.subtask) == (7, "v1", 0)
    assert set(ack.states) == {"head", "sink"}
    assert [h.path for h in ack.states["head"]["operator"]] == ["chk-7/head/0/op"]
    assert s.storage.files == {"chk-7/head/0/op": b"aaaa", "chk-7/sink/0/op": b"bb"}
    assert s.storage.flushed == ["chk-7/head/0", "chk-7/sink/0"]  # synced before the acknowledgement
    assert ack.stats["alignment_ms"] == pytest.approx(250)
    assert ack.stats["sync_ms"] == pytest.approx(6)  # two operators of 3 ms each
    assert ack.stats["async_ms"] == pytest.approx(10)
    assert ack.stats["size"] == 6.0
    assert ack.stats["cpu_ms"] == pytest.approx(2)
    assert ack.positions == [("split-0", 0)]  # taken with the synchronous part, not at the ack
    assert (ack.records_in, ack.records_out) == (40, 30)  # read at the ack


def test_preparation_runs_in_budgets_between_batches_and_the_write_waits_for_it() -> None:
    async def scenario() -> tuple[Setup, list[int]]:
        s = Setup()
        op = s.add("reduce", steps=3)
        s.checkpointer.checkpoint(Barrier(1, 0), 0.0, None)
        seen = [op.prepared_steps]
        while s.checkpointer.preparing:
            s.clock.advance(PREPARE_BUDGET_S)
            s.checkpointer.prepare(PREPARE_BUDGET_S)
            seen.append(op.prepared_steps)
        await settle()
        return s, seen

    s, seen = run(scenario())
    assert seen[0] >= 1 and seen[-1] == 3
    assert kinds(s.sent) == ["Ack"]


def test_a_small_snapshot_to_a_local_disk_is_written_and_acknowledged_inline() -> None:
    s = Setup(inline=True)
    s.add("head", b"x" * 100)

    async def scenario() -> list[str]:
        s.checkpointer.checkpoint(Barrier(3, 0), 0.0, None)
        return kinds(s.sent)  # before the loop ran anything else

    assert run(scenario()) == ["Ack"]


def test_a_failing_synchronous_part_declines_with_the_operator_and_still_forwards_the_barrier() -> None:
    s = Setup()
    s.add("head")
    s.add("broken", fail=RuntimeError("state is gone"))
    barrier = Barrier(4, 0)

    async def scenario() -> bool:
        return s.checkpointer.checkpoint(barrier, 0.0, None)

    assert run(scenario()) is False
    assert ("forward", barrier) in s.chain.log
    (decline,) = s.sent
    assert isinstance(decline, Decline)
    assert decline.cp == 4 and not decline.subsumed
    assert decline.reason == "operator 'broken' failed to snapshot: RuntimeError: state is gone"
    assert not s.checkpointer.preparing


def test_a_failing_write_declines_with_the_reason_and_never_acknowledges() -> None:
    s = Setup(fail_write=OSError("disk full"))
    s.add("head")

    async def scenario() -> None:
        s.checkpointer.checkpoint(Barrier(5, 0), 0.0, None)
        await settle()

    run(scenario())
    (decline,) = s.sent
    assert isinstance(decline, Decline)
    assert decline.cp == 5 and decline.vertex == "v1" and decline.subtask == 0
    assert decline.reason == "map (1/1): disk full"


def test_an_inline_write_that_fails_declines_too() -> None:
    s = Setup(inline=True, fail_write=PermissionError("read-only"))
    s.add("head")

    async def scenario() -> None:
        s.checkpointer.checkpoint(Barrier(6, 0), 0.0, None)

    run(scenario())
    assert [(type(m).__name__, getattr(m, "reason", "")) for m in s.sent] == [("Decline", "map (1/1): read-only")]


def test_an_unaligned_snapshot_waits_for_its_capture_and_writes_it_with_the_head_operator() -> None:
    async def scenario() -> tuple[Setup, list[str]]:
        s = Setup(inline=True)  # a capture never goes inline
        s.add("head")
        capture = InFlightCapture([1], overtaken=[[1, 2], [3]])
        s.checkpointer.checkpoint(Barrier(9, 0, unaligned=True), 0.0, capture)
        await settle()
        before_end = kinds(s.sent)
        capture.add([4])
        capture.end(1)
        await settle()
        return s, before_end

    s, before_end = run(scenario())
    assert before_end == []  # channel 1's barrier had not arrived
    (ack,) = s.sent
    assert isinstance(ack, Ack)
    (handle,) = ack.states["head"]["channel"]
    assert handle.path == "chk-9/head/0/in-flight"
    assert SafeSerializer().decode(s.storage.files[handle.path]) == [1, 2, 3, 4]


def test_a_subsumed_checkpoint_is_declined_as_such() -> None:
    s = Setup()
    s.checkpointer.decline_subsumed(11)
    (decline,) = s.sent
    assert isinstance(decline, Decline)
    assert decline.cp == 11 and decline.subsumed


def test_completion_and_abort_reach_every_operator() -> None:
    s = Setup()
    a, b = s.add("a"), s.add("b")
    s.checkpointer.notify_complete(2)
    s.checkpointer.notify_aborted(3)
    assert (a.completed, b.completed, a.aborted, b.aborted) == ([2], [2], [3], [3])


def test_a_finishing_task_prepares_what_is_queued_and_waits_for_the_writes() -> None:
    async def scenario() -> Setup:
        s = Setup()
        s.add("reduce", steps=100_000)  # more than one budget of steps
        s.checkpointer.checkpoint(Barrier(1, 0), 0.0, None)
        await s.checkpointer.finish(5.0, cancelled=False)
        return s

    s = run(scenario())
    assert kinds(s.sent) == ["Ack"]


def test_a_snapshot_error_no_restart_mends_fails_the_task_instead_of_declining() -> None:
    s = Setup()
    s.add("head", fail=SerializationError("a value of class Secret is not declared"))

    async def scenario() -> bool:
        return s.checkpointer.checkpoint(Barrier(8, 0), 0.0, None)

    assert run(scenario()) is False
    (failed,) = s.sent
    assert isinstance(failed, TaskFailed)
    assert (failed.vertex, failed.subtask, failed.failure_class) == ("v1", 0, "unserializable")
    assert failed.error == "SerializationError: a value of class Secret is not declared"


def test_a_write_error_no_restart_mends_fails_the_task_too() -> None:
    s = Setup(fail_write=SerializationError("refused"))
    s.add("head")

    async def scenario() -> None:
        s.checkpointer.checkpoint(Barrier(9, 0), 0.0, None)
        await settle()

    run(scenario())
    assert kinds(s.sent) == ["TaskFailed"]
