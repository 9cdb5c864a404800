"""One JobMaster attempt against fake slots: deploy → running → how it ends, and its message handlers.

The slots are fake control links on a real ``SlotRegistry``; the coordinator and the checkpoint
storage are real (local files under ``tmp_path``), so a completed checkpoint has its ``_metadata``.
"""

from __future__ import annotations

import asyncio
import time
import typing
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from streamjob.worker.checkpoint.stats import CheckpointStats
from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.attempt import (
    Attempt,
    AttemptContext,
    AttemptOutcome,
    AttemptPhase,
    OutcomeKind,
)
from streamjob.worker.jobmaster.plan import JobPlan, resolve_plan
from streamjob.worker.jobmaster.savepoints import SavepointTracker
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.loader import load_job
from streamjob.worker.protocol.messages import (
    Ack,
    Bye,
    Cancel,
    Deploy,
    EndOfInput,
    Finish,
    Metrics,
    Prepared,
    Register,
    Release,
    SlotFailed,
    SlotFinished,
    Start,
    TaskCounters,
    TaskFailed,
    ToJobMaster,
    ToSlot,
    Trigger,
)
from streamjob.worker.protocol.rest import SavepointStatus
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"
M = TypeVar("M")


class FakeLink:
    """A slot's control link that records what the JobMaster sends it."""

    def __init__(self) -> None:
        self.sent: list[ToSlot] = []
        self.closed = False

    def send(self, message: ToSlot) -> None:
        self.sent.append(message)

    async def close(self, wait_s: float = 1.0) -> None:
        self.closed = True

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.sent if isinstance(m, kind)]


def _plan(tmp_path: Path, **config: Any) -> JobPlan:
    loaded = load_job(str(EXAMPLE), [])
    settings = {"name": "attempt", "entrypoint": str(EXAMPLE), "checkpoints_uri": (tmp_path / "ckpt").as_uri()}
    parsed = parse_job_config({**settings, "job_id": "0123456789abcdef", **config}, source="(test)")
    return resolve_plan(parsed, loaded, default_checkpoints_uri=(tmp_path / "ckpt").as_uri())


class World:
    """An attempt of ``balance.py`` at parallelism 2 (two slots, four subtasks) and its fake slots."""

    def __init__(self, tmp_path: Path, *, hold_s: float | None = None, **config: Any) -> None:
        self.plan = _plan(tmp_path, **{"parallelism": 2, "workers": 2, **config})
        self.registry = SlotRegistry()
        self.executor = ThreadPoolExecutor(max_workers=2)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.savepoints = SavepointTracker()
        self.storage = CheckpointStorage.open(
            self.plan.checkpoints_uri,
            self.plan.savepoints_uri,
            namespace="local",
            name="attempt",
            job_id=self.plan.job_id,
        )
        self.attempt = Attempt(
            AttemptContext(
                plan=self.plan,
                number=0,
                job_id=self.plan.job_id,
                storage=self.storage,
                registry=self.registry,
                executor=self.executor,
                stats=CheckpointStats(),
                savepoints=self.savepoints,
                events=lambda kind, data: self.events.append((kind, data)),
                hold_deploy_until=None if hold_s is None else time.monotonic() + hold_s,
            )
        )
        self.links: list[FakeLink] = []
        self.conns: list[SlotConnection] = []

    async def register(self, count: int = 2) -> None:
        await _until(lambda: self.registry.accepting > 0, "registration to open")
        for index in range(count):
            link = FakeLink()
            conn = self.registry.register(link, ("127.0.0.1", 7000 + index), 100 + index)  # type: ignore[arg-type]
            assert conn is not None
            self.links.append(link)
            self.conns.append(conn)

    def tell(self, index: int, message: ToJobMaster) -> None:
        self.attempt.on_message(self.conns[index], message)

    async def running(self) -> None:
        """Registers both slots, has them prepare, and waits for ``start``."""
        await self.register()
        await _until(lambda: all(link.of(Deploy) for link in self.links), "deploy")
        for index in range(2):
            self.tell(index, Prepared(tasks=2))
        await _until(lambda: self.attempt.phase is AttemptPhase.RUNNING, "the attempt to run")
        assert all(link.of(Start) for link in self.links)

    def subtasks(self) -> list[tuple[str, int]]:
        return self.plan.graph.subtasks()

    def ack_all(self, checkpoint_id: int) -> None:
        for vertex, subtask in self.subtasks():
            ack = Ack(
                cp=checkpoint_id,
                vertex=vertex,
                subtask=subtask,
                states={},
                stats={},
                positions=[],
                records_in=5,
                records_out=5,
            )
            self.tell(subtask, ack)

    def goodbyes(self) -> list[str]:
        return [bye.outcome for link in self.links for bye in link.of(Bye)]

    def releases(self) -> list[int]:
        return [release.attempt for link in self.links for release in link.of(Release)]


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _scenario(tmp_path: Path, body: Callable[[World], Awaitable[None]], **kw: Any) -> tuple[World, AttemptOutcome]:
    async def main() -> tuple[World, AttemptOutcome]:
        world = World(tmp_path, **kw)
        run = asyncio.create_task(world.attempt.run(None))
        try:
            await body(world)
            return world, await asyncio.wait_for(run, 20)
        finally:
            run.cancel()
            world.executor.shutdown(wait=False)

    return asyncio.run(main())


def test_the_handlers_cover_every_message_a_slot_sends(tmp_path: Path) -> None:
    async def main() -> set[type[Any]]:
        return set(World(tmp_path).attempt._handlers)

    union = typing.get_args(typing.get_args(ToJobMaster)[0])
    assert asyncio.run(main()) == set(union)


def test_a_deploy_carries_each_slot_its_index_and_the_peers(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        deploys = [link.of(Deploy)[0] for link in w.links]
        assert [d.slot_index for d in deploys] == [0, 1]
        assert {d.token for d in deploys} == {deploys[0].token} and len(deploys[0].token) == 32
        assert [(s.slot, s.port) for s in deploys[0].slots] == [(0, 7000), (1, 7001)]
        assert all(d.job_id == w.plan.job_id and d.attempt == 0 and d.restore == {} for d in deploys)
        w.attempt.cancel()

    _scenario(tmp_path, body)


def test_a_lost_slot_fails_the_attempt_and_the_slots_are_released(tmp_path: Path) -> None:
    """The slots stay registered for the next attempt, fenced until they stopped their tasks (no goodbye)."""

    async def body(w: World) -> None:
        await w.running()
        w.tell(
            0,
            Metrics(
                tasks=[TaskCounters(vertex="transactions", subtask=0, records_in=7, records_out=7, backpressured_s=0.5)]
            ),
        )
        assert w.attempt.records_in_total() == 7
        w.attempt.on_slot_lost(w.conns[1])

    world, outcome = _scenario(tmp_path, body)
    assert outcome.kind is OutcomeKind.FAILED and not outcome.final
    assert outcome.reason == "worker slot 1 (pid 101) was lost: its process exited or the connection dropped"
    assert world.goodbyes() == [] and world.releases() == [0, 0]
    assert not any(link.closed for link in world.links) and world.registry.ready == 0
    assert all(conn.fenced == 0 for conn in world.registry.slots.values())
    assert world.attempt.phase is AttemptPhase.ENDED and world.attempt.coordinator is not None
    assert world.attempt.coordinator.stopped


def test_the_first_reason_to_end_wins(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        w.tell(1, TaskFailed(vertex="balance-manager", subtask=1, error="ValueError: boom"))
        w.attempt.on_slot_lost(w.conns[0])
        w.attempt.cancel()

    _, outcome = _scenario(tmp_path, body)
    assert outcome == AttemptOutcome(OutcomeKind.FAILED, "task balance-manager (2) failed: ValueError: boom")


def test_a_corrupt_restore_is_final_with_its_exit_code(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        w.tell(0, SlotFailed(error="state file x is corrupted", corrupt_restore=True))

    _, outcome = _scenario(tmp_path, body)
    assert outcome.kind is OutcomeKind.FAILED_FINAL and outcome.final and outcome.exit_code == 3
    assert outcome.reason is not None and "worker slot 0" in outcome.reason


def test_a_finished_job_takes_a_final_checkpoint_then_finishes(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        for vertex, subtask in w.subtasks():
            w.tell(subtask, EndOfInput(vertex=vertex, subtask=subtask, records_in=3, records_out=3))
        await _until(lambda: any(link.of(Trigger) for link in w.links), "the final checkpoint")
        final = w.links[0].of(Trigger)[-1].barrier.id
        assert not w.links[0].of(Finish)
        w.ack_all(final)
        await _until(lambda: all(link.of(Finish) for link in w.links), "finish after the final checkpoint")
        assert (w.storage.latest_retained() or pytest.fail("no checkpoint")).checkpoint_id == final
        w.tell(0, SlotFinished())
        w.attempt.on_slot_lost(w.conns[0])  # a finished slot may go
        w.registry.remove(w.conns[0])  # as JobMaster.on_slot_lost does: the registry forgets it
        assert not w.attempt.ended
        w.tell(1, SlotFinished())

    world, outcome = _scenario(tmp_path, body)
    assert outcome == AttemptOutcome(OutcomeKind.FINISHED)
    assert world.goodbyes() == ["finished"]  # slot 0 has gone: only slot 1 is told
    assert [kind for kind, _ in world.events] == ["running", "checkpoint"]


def test_cancel_tells_the_slots_to_cancel_then_goodbye(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        w.attempt.cancel()

    world, outcome = _scenario(tmp_path, body)
    assert outcome.kind is OutcomeKind.CANCELLED
    for link in world.links:
        kinds = [type(m) for m in link.sent]
        assert kinds.index(Cancel) < kinds.index(Bye)
    assert world.goodbyes() == ["cancelled", "cancelled"]


def test_stop_with_savepoint_completes_the_request_and_stops(tmp_path: Path) -> None:
    requests: list[Any] = []

    async def body(w: World) -> None:
        await w.running()
        assert w.attempt.coordinator is not None
        directory = w.storage.new_savepoint_dir(None)
        requests.append(w.savepoints.request(w.attempt.coordinator, directory, stop=True))
        await _until(lambda: any(link.of(Trigger) for link in w.links), "the savepoint's barrier")
        barrier = w.links[0].of(Trigger)[-1].barrier
        assert barrier.savepoint_dir == directory and barrier.stop
        w.ack_all(barrier.id)
        await _until(lambda: all(link.of(Finish) for link in w.links), "finish after the savepoint")
        for index in range(2):
            w.tell(index, SlotFinished())

    world, outcome = _scenario(tmp_path, body)
    assert outcome.kind is OutcomeKind.STOPPED_WITH_SAVEPOINT
    [request] = requests
    assert request.status is SavepointStatus.COMPLETED and request.location == request.directory
    assert Path(request.location.removeprefix("file://"), "_metadata").exists()
    assert [kind for kind, _ in world.events] == ["running", "savepoint"]


def test_a_savepoint_in_progress_fails_when_the_attempt_ends(tmp_path: Path) -> None:
    requests: list[Any] = []

    async def body(w: World) -> None:
        await w.running()
        assert w.attempt.coordinator is not None
        requests.append(w.savepoints.request(w.attempt.coordinator, w.storage.new_savepoint_dir(None), stop=False))
        w.attempt.on_slot_lost(w.conns[0])

    _scenario(tmp_path, body)
    assert requests[0].status is SavepointStatus.FAILED
    assert requests[0].reason == "the job is stopping"  # the coordinator aborted its checkpoint


def test_slots_that_do_not_register_in_time_fail_the_attempt(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.register(count=1)

    world, outcome = _scenario(tmp_path, body, worker_register_timeout_ms=1000)
    assert outcome == AttemptOutcome(OutcomeKind.FAILED, "only 1 of 2 worker slots registered within 1000 ms")
    assert world.goodbyes() == [] and world.releases() == [0] and not world.links[0].closed


def test_slots_that_do_not_prepare_in_time_fail_the_attempt(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.register()
        w.tell(0, Prepared(tasks=2))
        w.tell(0, Register(data_host="h", data_port=1, pid=1))  # registered twice: logged, nothing else

    _, outcome = _scenario(tmp_path, body, worker_register_timeout_ms=1000)
    assert outcome == AttemptOutcome(OutcomeKind.FAILED, "only 1 of 2 worker slots prepared their tasks within 1000 ms")


def test_an_attempt_needing_more_slots_than_configured_fails_without_starting(tmp_path: Path) -> None:
    async def main() -> tuple[AttemptOutcome, int]:
        world = World(tmp_path, workers=1)
        outcome = await world.attempt.run(None)
        world.executor.shutdown(wait=False)
        return outcome, world.registry.accepting

    outcome, accepting = asyncio.run(main())
    assert outcome.kind is OutcomeKind.FAILED_FINAL and accepting == 0
    assert outcome.reason == (
        "the job needs 2 slots (per slot sharing group its largest parallelism, summed over the groups) but "
        "workers × slots per worker = 1; raise spec.workers or spec.taskSlots (workers/slots_per_worker), "
        "or lower the parallelism"
    )


def test_the_deployment_waits_out_the_restart_backoff(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.register()
        await _until(lambda: all(link.of(Deploy) for link in w.links), "deploy")
        began = time.monotonic()
        for index in range(2):
            w.tell(index, Prepared(tasks=2))
        await _until(lambda: w.attempt.phase is AttemptPhase.RUNNING, "the attempt to run")
        assert 0.25 <= time.monotonic() - began < 5.0
        w.attempt.cancel()

    _scenario(tmp_path, body, hold_s=0.4)


def test_a_failure_while_holding_ends_the_hold_at_once(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.register()
        await _until(lambda: all(link.of(Deploy) for link in w.links), "deploy")
        for index in range(2):
            w.tell(index, Prepared(tasks=2))
        await asyncio.sleep(0.05)
        w.attempt.on_slot_lost(w.conns[0])

    began = time.monotonic()
    world, outcome = _scenario(tmp_path, body, hold_s=30.0)
    assert outcome.kind is OutcomeKind.FAILED and time.monotonic() - began < 10.0
    assert not any(link.of(Start) for link in world.links)


def test_an_end_of_input_after_the_coordinator_stopped_is_harmless(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        assert w.attempt.coordinator is not None
        w.attempt.coordinator.stop()
        for vertex, subtask in w.subtasks():  # every task ends its input after the stop
            w.tell(subtask, EndOfInput(vertex=vertex, subtask=subtask, records_in=1, records_out=1))
        assert not any(link.of(Trigger) for link in w.links) and w.attempt._final_checkpoint is None
        w.attempt.cancel()

    _scenario(tmp_path, body)


def test_the_first_failure_a_slot_reports_is_the_attempts_root_cause(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        failed = TaskFailed(
            vertex="balance-manager",
            subtask=1,
            error="ValueError: bad amount",
            exception="ValueError",
            operator_uid="balance-manager",
            traceback=["  File job.py, line 3, in map", "ValueError: bad amount"],
        )
        w.tell(1, failed)
        w.tell(0, SlotFailed(error="lost the data connection to slot 1"))  # an echo of the first

    world, outcome = _scenario(tmp_path, body)
    assert outcome.reason == "task balance-manager (2) failed: ValueError: bad amount"
    detail = world.attempt.failure_detail
    assert detail is not None
    assert (detail.exception, detail.message, detail.task, detail.operator_uid) == (
        "ValueError",
        "bad amount",
        "balance-manager (2)",
        "balance-manager",
    )
    assert detail.traceback[-1] == "ValueError: bad amount" and detail.attempt == 0


def test_a_slot_failure_is_a_root_cause_naming_the_slot(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.running()
        w.tell(0, SlotFailed(error="cannot bind the data port"))

    world, _ = _scenario(tmp_path, body)
    assert world.attempt.failure_detail is not None
    assert world.attempt.failure_detail.model_dump() == {
        "exception": "SlotFailed",
        "message": "worker slot 0: cannot bind the data port",
        "task": None,
        "operator_uid": None,
        "traceback": (),
        "attempt": 0,
    }
