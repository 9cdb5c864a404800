"""The task loop (``runtime/task.py``) with real operators, a real input gate and a fake clock.

A consumer task gets batches, barriers and end-of-stream on its gate and emits to a record writer
whose channel the test reads; a source task polls its source. Timers fire by the task's clock,
end of input is forwarded downstream and reported, and a barrier produces the acknowledgement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.functions import Collector, KeyedProcessFunction, OnTimerContext, ProcessContext
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.graph.job_graph import JobGraph, JobVertex, build_job_graph
from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.protocol.events import END_OF_STREAM, Barrier, EndOfStream
from streamjob.worker.protocol.messages import Ack, EndOfInput, ToJobMaster
from streamjob.worker.runtime.channels import InputGate, LocalOutputChannel, RecordWriter
from streamjob.worker.runtime.task import Task
from streamjob.worker.runtime.task_setup import TaskServices
from tests.unit.runtime_support import FakeClock, FakeStorage, InlineExecutor, kinds

pytestmark = pytest.mark.unit

TIMER_AT = 5_000_000  # wall ms; the fake clock starts at 1,000,000


class TimerAtFixedTime(KeyedProcessFunction[Any, int, Any]):
    """Passes records on as ("seen", x) and registers one timer per key at ``TIMER_AT``."""

    def process_element(self, value: int, ctx: ProcessContext, out: Collector[Any]) -> None:
        ctx.timer_service().register_processing_time_timer(TIMER_AT)
        out.collect(("seen", value))

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[Any]) -> None:
        out.collect(("timer", ctx.get_current_key(), timestamp))


def parity(x: int) -> int:
    return x % 2


def keyed_graph() -> JobGraph:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    stream = env.from_collection(list(range(10))).uid("src")
    mapped = stream.key_by(parity).process(TimerAtFixedTime()).uid("timers").map(lambda r: (*r, "mapped")).uid("map")
    mapped.rebalance().add_sink(DiscardingSink()).uid("sink")  # its own vertex: the test reads the map's output
    return build_job_graph(env.transformations, default_parallelism=1, max_parallelism=128)


class Harness:
    """One task of ``vertex`` with a one-channel input gate and one output channel the test reads."""

    def __init__(self, vertex: JobVertex, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.sent: list[ToJobMaster] = []
        self.storage = FakeStorage()
        services = TaskServices(
            job_id="job",
            job_name="test",
            attempt=0,
            settings=CheckpointSettings(),
            backend_kind="hashmap",
            incremental=False,
            batch_size=4,
            local_dir=tmp_path,
            storage=self.storage,
            executor=InlineExecutor(),
            send=self.sent.append,
        )
        self.gate = InputGate()
        self.input = self.gate.add_channel((0, 0, 0))
        self.out = InputGate()
        out_channel = self.out.add_channel((1, 0, 0))
        writer = RecordWriter([LocalOutputChannel(out_channel)], Partitioning.FORWARD, None, 128, 0)
        self.task = Task(vertex, 0, services, self.gate, [writer], None, clock=self.clock)

    def output(self) -> list[Any]:
        """Everything emitted so far: records and events, in order (their credits returned)."""
        items = []
        while (found := self.out.poll()) is not None:
            item = found[1]
            items.extend(item if type(item) is list else [item])
        return items

    async def until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Lets the task run until ``condition`` holds (the loop yields to us at every wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            assert loop.time() < deadline, "condition not reached"
            await asyncio.sleep(0.001)


def run(tmp_path: Path, scenario: Callable[[Harness], Awaitable[None]], vertex_index: int = 1) -> Harness:
    vertex = keyed_graph().vertices[vertex_index]

    async def main() -> Harness:
        harness = Harness(vertex, tmp_path)
        running = asyncio.create_task(harness.task.run())
        try:
            await scenario(harness)
        finally:
            harness.task.finish()
            await asyncio.wait_for(running, 10)
        return harness

    return asyncio.run(main())


def test_records_go_through_the_chain_in_order_and_end_of_input_goes_downstream(tmp_path: Path) -> None:
    out: list[Any] = []

    async def scenario(h: Harness) -> None:
        h.input.push([1, 2, 3])
        h.input.push([4])
        h.input.push(END_OF_STREAM)
        await h.until(lambda: any(type(m) is EndOfInput for m in h.sent))
        out.extend(h.output())

    h = run(tmp_path, scenario)
    assert out == [
        ("seen", 1, "mapped"),
        ("seen", 2, "mapped"),
        ("seen", 3, "mapped"),
        ("seen", 4, "mapped"),
        END_OF_STREAM,
    ]
    (end,) = [m for m in h.sent if isinstance(m, EndOfInput)]
    assert (end.records_in, end.records_out) == (4, 4)
    assert (h.task.records_in, h.task.records_out) == (4, 4)


def test_timers_fire_when_the_task_clock_reaches_them_and_go_through_the_rest_of_the_chain(tmp_path: Path) -> None:
    out: list[Any] = []

    async def scenario(h: Harness) -> None:
        h.input.push([1, 2])
        await h.until(lambda: h.task.records_out == 2)
        for _ in range(5):  # several turns of the loop at a time before the timer
            await asyncio.sleep(0.06)
        out.extend(h.output())
        assert out == [("seen", 1, "mapped"), ("seen", 2, "mapped")]
        h.clock.advance((TIMER_AT - h.clock.wall_ms) / 1000)
        h.gate.wake()
        await h.until(lambda: h.task.records_out == 4)
        out.extend(h.output())

    run(tmp_path, scenario)
    assert sorted(out[2:]) == [("timer", 0, TIMER_AT, "mapped"), ("timer", 1, TIMER_AT, "mapped")]


def test_a_barrier_is_forwarded_after_the_records_before_it_and_acknowledged(tmp_path: Path) -> None:
    out: list[Any] = []

    async def scenario(h: Harness) -> None:
        h.input.push([1])
        h.input.push(Barrier(3, 42))
        h.input.push([2])
        await h.until(lambda: any(isinstance(m, Ack) for m in h.sent) and h.task.records_out == 2)
        out.extend(h.output())

    h = run(tmp_path, scenario)
    assert out == [("seen", 1, "mapped"), Barrier(3, 42), ("seen", 2, "mapped")]
    (ack,) = [m for m in h.sent if isinstance(m, Ack)]
    assert ack.cp == 3 and set(ack.states) == {"timers", "map"}
    assert ack.records_in >= 1
    assert any(path.startswith("chk-3/timers/0/") for path in h.storage.files)


def test_a_source_task_polls_its_source_until_the_end_and_reports_it(tmp_path: Path) -> None:
    out: list[Any] = []

    async def scenario(h: Harness) -> None:
        await h.until(lambda: any(type(m) is EndOfInput for m in h.sent))
        out.extend(h.output())

    h = run(tmp_path, scenario, vertex_index=0)
    assert out == [*range(10), END_OF_STREAM]
    assert kinds(h.sent) == ["EndOfInput"]
    assert type(out[-1]) is EndOfStream


def test_a_source_checkpoint_snapshots_the_position_then_forwards_the_barrier(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        h.task.trigger_checkpoint(Barrier(1, 7))
        await h.until(lambda: any(isinstance(m, Ack) for m in h.sent))

    h = run(tmp_path, scenario, vertex_index=0)
    (ack,) = [m for m in h.sent if isinstance(m, Ack)]
    assert ack.cp == 1 and ack.positions  # the source's split positions at the barrier
    assert "src" in ack.states
