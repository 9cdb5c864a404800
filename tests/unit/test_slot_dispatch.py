"""A slot's control dispatch (``streamjob.worker.slot``): each message from the JobMaster reaches the right
tasks, a failing task is reported instead of ending the slot, and the receive loop survives bad messages
but not bad frames. Against fake tasks and a fake connection (a ``StreamReader`` fed by the test)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker import slot as slot_module
from streamjob.worker.config import CheckpointSettings, JobConfig
from streamjob.worker.errors import EntrypointError
from streamjob.worker.loader import LoadedJob
from streamjob.worker.protocol import messages as m
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.protocol.framing import HEADER, NO_CHANNEL, FrameKind, frame, read_frame
from streamjob.worker.slot import Slot

pytestmark = pytest.mark.unit


class FakeVertex:
    def __init__(self, vid: str, is_source: bool) -> None:
        self.id = vid
        self.is_source = is_source


class FakeTask:
    """Records the control calls a slot makes; ``fail_on`` names a call that raises."""

    def __init__(self, vid: str, *, source: bool = False, fail_on: str | None = None) -> None:
        self.vertex = FakeVertex(vid, source)
        self.subtask = 0
        self.name = f"{vid} (1/1)"
        self.calls: list[tuple[str, Any]] = []
        self.fail_on = fail_on
        self.cancelled = False
        self.ends: asyncio.Event | None = None
        """Set by the test: ``run`` waits for it (a task that runs until it is cancelled)."""

    def _call(self, what: str, arg: Any = None) -> None:
        self.calls.append((what, arg))
        if what == self.fail_on:
            raise ValueError(f"{what} broke")

    def trigger_checkpoint(self, barrier: Barrier) -> None:
        self._call("trigger", barrier)

    def notify_complete(self, cp: int) -> None:
        self._call("notify", cp)

    def notify_aborted(self, cp: int) -> None:
        self._call("abort", cp)

    def finish(self) -> None:
        self._call("finish")

    def cancel(self) -> None:
        self.cancelled = True
        self._call("cancel")
        if self.ends is not None and self.fail_on != "stop":
            self.ends.set()

    async def run(self) -> None:
        self._call("run")
        if self.ends is not None:
            await self.ends.wait()


def sent(slot: Slot) -> list[Any]:
    """The messages the slot queued for the JobMaster, decoded from their frames."""

    async def decode_all() -> list[Any]:
        reader = asyncio.StreamReader()
        while not slot.outbox.empty():
            reader.feed_data(slot.outbox.get_nowait())
        reader.feed_eof()
        out = []
        while not reader.at_eof():
            kind, _, payload = await read_frame(reader, 1 << 20)
            assert kind == FrameKind.MESSAGE
            out.append(m.decode(payload, m.TO_JOBMASTER))
        return out

    return asyncio.run(decode_all())


@pytest.fixture
def slot(tmp_path: Path) -> Iterator[Slot]:
    made = Slot("127.0.0.1:1", "127.0.0.1", "s" * 32, work_dir=tmp_path)
    yield made
    made.executor.shutdown(wait=False)


def with_tasks(slot: Slot, *tasks: FakeTask) -> list[FakeTask]:
    for task in tasks:
        slot.tasks[(task.vertex.id, 0)] = task  # type: ignore[assignment]
    return list(tasks)


def dispatch(slot: Slot, *messages: Any) -> None:
    async def go() -> None:
        for message in messages:
            await slot._dispatch(message)

    asyncio.run(go())


def test_a_trigger_reaches_only_the_source_tasks(slot: Slot) -> None:
    source, sink = with_tasks(slot, FakeTask("src", source=True), FakeTask("sink"))
    spec = m.BarrierSpec(id=3, timestamp_ms=99, unaligned=True)
    dispatch(slot, m.Trigger(barrier=spec))
    assert source.calls == [("trigger", spec.to_barrier())] and sink.calls == []


def test_notify_and_abort_reach_every_task_and_a_failing_one_is_reported(slot: Slot) -> None:
    good, bad = with_tasks(slot, FakeTask("a", source=True), FakeTask("b", fail_on="notify"))
    dispatch(slot, m.Notify(cp=4), m.Abort(cp=5))
    assert good.calls == [("notify", 4), ("abort", 5)] and bad.calls == [("notify", 4), ("abort", 5)]
    (report,) = sent(slot)
    assert isinstance(report, m.TaskFailed) and report.vertex == "b" and "ValueError: notify broke" in report.error
    assert slot.failed is None and not slot.done.is_set()  # the JobMaster decides; the slot goes on


def test_finish_finishes_every_task_and_expects_peers_to_close(slot: Slot) -> None:
    tasks = with_tasks(slot, FakeTask("a", source=True), FakeTask("b"))
    dispatch(slot, m.Finish())
    assert all(t.calls == [("finish", None)] for t in tasks)
    assert slot.data.closing and not slot.done.is_set()


@pytest.mark.parametrize(("message", "failed"), [(m.Bye(outcome="failed"), True), (m.Bye(outcome="finished"), False)])
def test_bye_cancels_the_tasks_and_ends_the_slot(slot: Slot, message: m.Bye, failed: bool) -> None:
    (task,) = with_tasks(slot, FakeTask("a"))
    dispatch(slot, message)
    assert task.calls == [("cancel", None)] and slot.done.is_set()
    assert (slot.failed is not None) is failed


def test_cancel_cancels_the_tasks_and_ends_the_slot_and_ping_does_nothing(slot: Slot) -> None:
    (task,) = with_tasks(slot, FakeTask("a"))
    dispatch(slot, m.Ping())
    assert task.calls == [] and not slot.done.is_set()
    dispatch(slot, m.Cancel())
    assert task.calls == [("cancel", None)] and slot.done.is_set() and slot.failed is None


def test_a_deployment_whose_job_does_not_load_is_a_final_slot_failure(tmp_path: Path) -> None:
    def broken(entrypoint: str, args: list[str]) -> LoadedJob:
        raise EntrypointError(f"the job's entrypoint {entrypoint} raised ImportError: no module named x")

    slot = Slot("127.0.0.1:1", "127.0.0.1", "s" * 32, work_dir=tmp_path, loader=broken)
    deploy = m.Deploy(
        attempt=1,
        job_id="j",
        token="t" * 32,
        config=JobConfig(name="job", entrypoint="job.py"),
        settings=CheckpointSettings(),
        backend="hashmap",
        incremental=False,
        batch_size=16,
        fingerprint="f",
        slot_index=0,
        slots=[],
        checkpoints_uri=tmp_path.as_uri(),
        savepoints_uri=None,
        restore_base=None,
        restore={},
    )
    try:
        dispatch(slot, deploy)
    finally:
        slot.executor.shutdown(wait=False)
    (report,) = sent(slot)
    assert isinstance(report, m.SlotFailed) and report.failure_class == "job_load" and "job.py" in report.error
    assert slot.failed is not None and slot.tasks == {}


def run_receive(slot: Slot, data: bytes) -> None:
    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await asyncio.wait_for(slot._receive(reader), 5.0)

    asyncio.run(go())


def test_the_receive_loop_skips_bad_messages_and_stops_at_bye(slot: Slot, caplog: pytest.LogCaptureFixture) -> None:
    (task,) = with_tasks(slot, FakeTask("a"))
    stream = (
        frame(FrameKind.MESSAGE, NO_CHANNEL, b"\xc1")  # not msgpack
        + frame(FrameKind.MESSAGE, NO_CHANNEL, m.encode(m.Register(data_host="h", data_port=1, pid=1)))  # wrong way
        + frame(FrameKind.DATA, NO_CHANNEL, b"records?")  # not a control frame
        + frame(FrameKind.MESSAGE, NO_CHANNEL, m.encode(m.Notify(cp=7)))
        + frame(FrameKind.MESSAGE, NO_CHANNEL, m.encode(m.Bye(outcome="finished")))
        + frame(FrameKind.MESSAGE, NO_CHANNEL, m.encode(m.Notify(cp=8)))  # after the end: never dispatched
    )
    with caplog.at_level(logging.WARNING, logger="streamjob.worker.slot"):
        run_receive(slot, stream)
    assert task.calls == [("notify", 7), ("cancel", None)] and slot.done.is_set()
    ignored = [r.getMessage() for r in caplog.records if "ignored a control message" in r.getMessage()]
    assert len(ignored) == 3 and all("\n" not in line for line in ignored)


def test_a_frame_over_the_limit_drops_the_connection(slot: Slot, caplog: pytest.LogCaptureFixture) -> None:
    (task,) = with_tasks(slot, FakeTask("a"))
    oversized = HEADER.pack(slot.limits.message_bytes + HEADER.size + 1, FrameKind.MESSAGE, 0, 0, 0)
    stream = oversized + frame(FrameKind.MESSAGE, NO_CHANNEL, m.encode(m.Notify(cp=1)))
    with caplog.at_level(logging.ERROR, logger="streamjob.worker.slot"):
        run_receive(slot, stream)
    assert task.calls == [] and not slot.done.is_set()  # the slot ends as having lost its JobMaster
    assert any("dropped the control connection" in r.getMessage() for r in caplog.records)


def test_start_runs_every_task_and_reports_a_failed_one(slot: Slot) -> None:
    good, bad = with_tasks(slot, FakeTask("a", source=True), FakeTask("b", fail_on="run"))
    frozen = gc.get_freeze_count()

    async def go() -> None:
        await slot._dispatch(m.Start())
        await asyncio.wait_for(asyncio.gather(*slot.running), 5.0)

    try:
        asyncio.run(go())
    finally:
        if frozen == 0:
            gc.unfreeze()  # _start freezes the heap, as a slot process does once its tasks run
    assert good.calls == [("run", None)] and bad.calls == [("run", None)]
    (report,) = sent(slot)
    assert isinstance(report, m.TaskFailed) and report.vertex == "b" and "run broke" in report.error
    assert slot.closed_tasks == 1 and not slot.done.is_set()  # the JobMaster ends the attempt, not the slot


def test_a_slot_whose_tasks_all_end_says_so_and_ends(slot: Slot) -> None:
    with_tasks(slot, FakeTask("a", source=True), FakeTask("b"))
    frozen = gc.get_freeze_count()

    async def go() -> None:
        await slot._dispatch(m.Start())
        await asyncio.wait_for(asyncio.gather(*slot.running), 5.0)

    try:
        asyncio.run(go())
    finally:
        if frozen == 0:
            gc.unfreeze()
    assert [type(x) for x in sent(slot)] == [m.SlotFinished] and slot.done.is_set()


def _running(slot: Slot, *tasks: FakeTask) -> None:
    """Starts the tasks as ``start`` would (without peers), each running until it is cancelled."""
    for task in tasks:
        task.ends = asyncio.Event()
    with_tasks(slot, *tasks)
    for task in tasks:
        running = asyncio.get_running_loop().create_task(slot._run_task(task))  # type: ignore[arg-type]
        slot.running.add(running)
        running.add_done_callback(slot.running.discard)


def test_release_stops_the_tasks_forgets_the_attempt_and_answers_released(slot: Slot) -> None:
    """A failed attempt's slot stays: its tasks end (not as finished), its data server refuses that attempt."""
    tasks = [FakeTask("a", source=True), FakeTask("b")]

    async def go() -> None:
        _running(slot, *tasks)
        slot.attempt, slot.failed = 4, "lost a peer"
        slot.data.attempt, slot.data.token = 4, "t" * 32
        await asyncio.sleep(0)
        await slot._dispatch(m.Release(attempt=4))

    asyncio.run(go())
    assert all(("cancel", None) in t.calls for t in tasks)
    assert slot.tasks == {} and slot.running == set() and slot.closed_tasks == 0
    assert slot.attempt is None and slot.failed is None and not slot.done.is_set()
    assert (slot.data.attempt, slot.data.token, slot.data.generation) == (-1, "", 1)
    assert sent(slot) == [m.Released(attempt=4)]  # no SlotFinished: cancelled tasks did not finish


def test_a_slot_whose_tasks_do_not_stop_when_released_fails_and_ends(
    slot: Slot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slot_module, "RELEASE_WAIT_S", 0.1)
    stuck = FakeTask("a", fail_on="stop")

    async def go() -> None:
        _running(slot, stuck)
        await asyncio.sleep(0)
        await slot._dispatch(m.Release(attempt=2))
        for running in slot.running:
            running.cancel()

    asyncio.run(go())
    (report,) = sent(slot)
    assert isinstance(report, m.SlotFailed) and "did not stop within" in report.error
    assert slot.done.is_set()  # the process exits; the JobMaster gets a fresh one
