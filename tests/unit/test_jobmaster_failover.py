"""Failover without a new JobMaster: released slots are fenced, stuck ones let go, restarts counted in place.

The JobMaster's loop runs scripted attempts (``test_jobmaster_restarts``) against a real ``SlotRegistry``
whose slots are fake control links; the real attempt's release is ``test_jobmaster_attempt``'s, the slot's
``test_slot_dispatch``'s, and real processes are killed in ``tests/integration/test_failover_in_place.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.jobmaster import jobmaster as jobmaster_module
from streamjob.worker.jobmaster.attempt import Attempt, AttemptContext, AttemptOutcome, OutcomeKind
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.protocol.messages import Bye, Release, Released, TaskFailed
from streamjob.worker.protocol.rest import JobState
from streamjob.worker.storage.snapshots import LoadedSnapshot
from tests.unit.test_jobmaster_attempt import FakeLink
from tests.unit.test_jobmaster_restarts import FAST, FakeLauncher, Script, _jobmaster, _run

pytestmark = pytest.mark.unit


def _register(
    registry: SlotRegistry, count: int, make_link: type[FakeLink] = FakeLink
) -> list[tuple[SlotConnection, FakeLink]]:
    registry.open_for(count)
    out = []
    for index in range(count):
        link = make_link()
        conn = registry.register(link, ("127.0.0.1", 7000 + index), 100 + index)  # type: ignore[arg-type]
        assert conn is not None
        out.append((conn, link))
    return out


def test_the_registry_fences_released_slots_and_frees_a_lost_ones_index() -> None:
    async def main() -> None:
        registry = SlotRegistry()
        (a, link_a), (b, _) = _register(registry, 2)
        registry.release(7)
        assert link_a.of(Release) == [Release(attempt=7)] and registry.ready == 0
        assert not await registry.wait_released(0.05)
        registry.released(a, 6)  # an answer for another attempt does not count
        assert a.fenced == 7
        registry.released(a, 7)
        registry.remove(b)  # lost while fenced: its index is free for a replacement
        assert await registry.wait_released(1.0) and registry.ready == 1
        replacement = registry.register(FakeLink(), ("127.0.0.1", 7009), 109)  # type: ignore[arg-type]
        assert replacement is not None and replacement.index == 1 and replacement.fenced is None
        assert await registry.wait_for_all(2, 1.0)

    asyncio.run(main())


def test_a_released_slots_messages_are_stale_until_it_answers_released(tmp_path: Path) -> None:
    script = Script(block=True)
    jm = _jobmaster(tmp_path, script)

    async def main() -> None:
        run = asyncio.create_task(jm.run())
        while not script.contexts:
            await asyncio.sleep(0.01)
        [(conn, _)] = _register(jm.registry, 1)
        jm.registry.release(0)
        failed = TaskFailed(vertex="v", subtask=0, error="ValueError: of the failed attempt")
        jm.on_slot_message(conn, failed)
        await asyncio.sleep(0.05)
        assert not run.done() and conn.fenced == 0  # the old attempt's failure fails nothing
        jm.on_slot_message(conn, Released(attempt=0))
        assert conn.fenced is None
        jm.on_slot_message(conn, failed)  # now it is the attempt's own: it fails, the next one starts
        while len(script.contexts) < 2:
            await asyncio.sleep(0.01)
        await jm.cancel()
        await asyncio.wait_for(run, 20)
        jm.executor.shutdown(wait=False)

    asyncio.run(main())
    assert jm.restarts == 1 and jm.failure is not None and "of the failed attempt" in jm.failure


class Releasing(Script):
    """Attempts that hold registered slots and release them when they fail, as ``Attempt._end`` does."""

    def __init__(self, *outcomes: AttemptOutcome, answer: bool, make_link: type[FakeLink] = FakeLink) -> None:
        super().__init__(*outcomes)
        self.answer = answer
        self.make_link = make_link
        self.links: list[FakeLink] = []

    def __call__(self, ctx: AttemptContext) -> Attempt:
        inner = super().__call__(ctx)
        script = self
        scripted_run = inner.run

        async def run(restore: LoadedSnapshot | None) -> AttemptOutcome:
            if not ctx.registry.slots:
                script.links += [link for _, link in _register(ctx.registry, 2, script.make_link)]
            outcome = await scripted_run(restore)
            if outcome.kind is OutcomeKind.FAILED:
                ctx.registry.release(ctx.number)
                if script.answer:
                    for conn in list(ctx.registry.slots.values()):
                        ctx.registry.released(conn, ctx.number)
            return outcome

        inner.run = run  # type: ignore[method-assign]
        return inner


def test_released_slots_stay_for_the_next_attempt_without_a_launcher(tmp_path: Path) -> None:
    """Kubernetes: the JobMaster restarts in place; the next attempt gets the same slots and a fresh number."""
    script = Releasing(
        AttemptOutcome(OutcomeKind.FAILED, "slot lost"), AttemptOutcome(OutcomeKind.FINISHED), answer=True
    )
    jm = _jobmaster(tmp_path, script, launcher=False, restart=FAST)
    assert _run(jm) == 0 and jm.state is JobState.FINISHED
    assert [(c.number, c.replace_slots) for c in script.contexts] == [(0, False), (1, True)]
    assert not any(link.of(Bye) for link in script.links) and not any(link.closed for link in script.links)


def test_slots_that_do_not_stop_their_tasks_are_let_go_and_started_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobmaster_module, "RELEASE_TIMEOUT_S", 0.2)
    script = Releasing(
        AttemptOutcome(OutcomeKind.FAILED, "slot lost"), AttemptOutcome(OutcomeKind.FINISHED), answer=False
    )
    jm = _jobmaster(tmp_path, script, restart=FAST)
    assert _run(jm) == 0
    assert isinstance(jm.launcher, FakeLauncher) and jm.launcher.stopped == 1
    assert [bye.outcome for link in script.links for bye in link.of(Bye)] == ["failed", "failed"]
    assert [link.closed for link in script.links] == [True, True, False, False]  # the second attempt's are new
    assert [c.replace_slots for c in script.contexts] == [False, False]  # every slot starts afresh


def test_the_slots_are_let_go_when_the_strategy_gives_up(tmp_path: Path) -> None:
    outcomes = [AttemptOutcome(OutcomeKind.FAILED, f"boom {i}") for i in range(3)]
    script = Releasing(*outcomes, answer=True)
    jm = _jobmaster(tmp_path, script, restart=FAST)
    assert _run(jm) == 5 and jm.state is JobState.FAILED
    assert [bye.outcome for link in script.links for bye in link.of(Bye)] == ["failed", "failed"]
    assert isinstance(jm.launcher, FakeLauncher) and jm.launcher.stopped == 1


def test_the_job_is_failed_before_the_slots_hear_goodbye(tmp_path: Path) -> None:
    """The operator reads FAILED before the workers exit: it must not take their exit for a crash to replace."""
    seen: list[JobState] = []

    class Watching(FakeLink):
        def send(self, message: Any) -> None:
            if isinstance(message, Bye):
                assert script.jm is not None
                seen.append(script.jm.state)
            super().send(message)

    outcomes = [AttemptOutcome(OutcomeKind.FAILED, f"boom {i}") for i in range(3)]
    script = Releasing(*outcomes, answer=True, make_link=Watching)
    assert _run(_jobmaster(tmp_path, script, restart=FAST)) == 5
    assert seen == [JobState.FAILED, JobState.FAILED]


def test_an_exponential_strategy_forgives_restarts_after_a_long_enough_attempt(tmp_path: Path) -> None:
    strategy = {"kind": "exponential-delay", "attempts": 3, "delay_ms": 100, "multiplier": 2, "reset_after_ms": 1000}
    jm: JobMaster = _jobmaster(tmp_path, Script(), restart=strategy)
    assert [jm._next_delay(0.1) for _ in range(3)] == [100, 200, 400]
    assert jm._next_delay(0.1) is None  # the fourth within the threshold: give up
    assert jm._next_delay(1.5) == 100  # a restart after an attempt that ran long enough starts over
    jm.executor.shutdown(wait=False)
