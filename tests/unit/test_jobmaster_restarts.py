"""The JobMaster's restart loop against scripted attempts: restart, give up, fail final, cancel, job state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.attempt import Attempt, AttemptContext, AttemptOutcome, OutcomeKind
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.jobmaster.slots import SlotConnection
from streamjob.worker.loader import load_job
from streamjob.worker.protocol.messages import Prepared
from streamjob.worker.protocol.rest import FailureDetail, JobState
from streamjob.worker.storage.snapshots import LoadedSnapshot

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[int] = []
        self.replaced: list[int] = []
        self.stopped = 0

    def start(self, slots: int, jobmaster: str, attempt: int) -> None:
        self.started.append(attempt)

    def replace_exited(self, jobmaster: str, attempt: int) -> int:
        self.replaced.append(attempt)
        return 0

    def stop_all(self, grace_s: float = 0.0) -> None:
        self.stopped += 1

    def pids(self) -> list[int]:
        return []

    def exited(self) -> list[tuple[int, int, Path]]:
        return []


class Script:
    """Outcomes the attempts end with, in order; records each attempt's context and the job state it saw."""

    def __init__(self, *outcomes: AttemptOutcome, block: bool = False) -> None:
        self.outcomes: Iterator[AttemptOutcome] = iter(outcomes)
        self.contexts: list[AttemptContext] = []
        self.states: list[JobState] = []
        self.block = block
        self.jm: JobMaster | None = None
        self.events: list[str] = []

    def __call__(self, ctx: AttemptContext) -> Attempt:
        script = self

        class Scripted(Attempt):
            async def run(self, restore: LoadedSnapshot | None) -> AttemptOutcome:
                script.contexts.append(self.ctx)
                assert script.jm is not None
                script.states.append(script.jm.state)
                if script.block:  # ends when cancelled or failed from outside
                    return await self._outcome
                outcome = next(script.outcomes)
                if outcome.kind.failed:
                    self.failure_detail = FailureDetail(exception="E", message=str(outcome.reason), attempt=ctx.number)
                return outcome

        return Scripted(ctx)


def _jobmaster(tmp_path: Path, script: Script, *, launcher: bool = True, **config: Any) -> JobMaster:
    loaded = load_job(str(EXAMPLE), [])
    base = {"name": "loop", "entrypoint": str(EXAMPLE), "checkpoints_uri": (tmp_path / "ckpt").as_uri()}
    parsed = parse_job_config({**base, **config}, source="(test)")
    plan = resolve_plan(parsed, loaded, default_checkpoints_uri=(tmp_path / "ckpt").as_uri())
    jm = JobMaster(
        plan,
        launcher=FakeLauncher() if launcher else None,
        attempts=script,
        events=lambda kind, data: script.events.append(kind),
        hold_deploy_until=12345.0,
    )
    script.jm = jm
    return jm


def _run(jm: JobMaster) -> int:
    async def main() -> int:
        try:
            return await asyncio.wait_for(jm.run(), 20)
        finally:
            jm.executor.shutdown(wait=False)

    return asyncio.run(main())


FAST = {"kind": "fixed-delay", "attempts": 2, "delay_ms": 10}


def test_a_failed_attempt_is_restarted_in_place_and_the_job_finishes(tmp_path: Path) -> None:
    script = Script(AttemptOutcome(OutcomeKind.FAILED, "slot lost"), AttemptOutcome(OutcomeKind.FINISHED))
    jm = _jobmaster(tmp_path, script, restart=FAST)
    assert _run(jm) == 0
    assert jm.state is JobState.FINISHED and jm.restarts == 1 and jm.failure == "slot lost"
    assert [c.number for c in script.contexts] == [0, 1] and jm.attempt == 1
    assert script.states == [JobState.DEPLOYING, JobState.RECOVERING]
    assert [c.hold_deploy_until for c in script.contexts] == [12345.0, None]  # only the first waits out a backoff
    assert script.events == ["restarting", "finished"]
    detail = jm.failure_detail  # the failed attempt's root cause outlives it
    assert detail is not None and (detail.message, detail.attempt) == ("slot lost", 0)
    assert jm.job_overview().failure_detail == detail


def test_the_restart_strategy_gives_up(tmp_path: Path) -> None:
    script = Script(*[AttemptOutcome(OutcomeKind.FAILED, f"boom {i}") for i in range(3)])
    jm = _jobmaster(tmp_path, script, restart=FAST)
    assert _run(jm) == 5
    assert jm.state is JobState.FAILED and not jm.final and jm.restarts == 3 and jm.failure == "boom 2"
    assert len(script.contexts) == 3


def test_a_final_failure_is_never_restarted_and_keeps_its_exit_code(tmp_path: Path) -> None:
    script = Script(AttemptOutcome(OutcomeKind.FAILED_FINAL, "state file x is corrupted", 3))
    jm = _jobmaster(tmp_path, script, restart=FAST)
    assert _run(jm) == 3
    assert jm.state is JobState.FAILED and jm.final and len(script.contexts) == 1


def test_on_kubernetes_a_failure_ends_the_jobmaster_for_the_operator_to_restart(tmp_path: Path) -> None:
    script = Script(AttemptOutcome(OutcomeKind.FAILED, "slot lost"))
    jm = _jobmaster(tmp_path, script, launcher=False, restart=FAST, restart_in_place=False)
    assert _run(jm) == 5
    assert jm.state is JobState.FAILED and not jm.final and len(script.contexts) == 1


def test_a_stop_with_savepoint_finishes_the_job(tmp_path: Path) -> None:
    jm = _jobmaster(tmp_path, Script(AttemptOutcome(OutcomeKind.STOPPED_WITH_SAVEPOINT)))
    assert _run(jm) == 0 and jm.state is JobState.FINISHED


def test_cancel_ends_the_running_attempt_and_the_job(tmp_path: Path) -> None:
    script = Script(block=True)
    jm = _jobmaster(tmp_path, script, restart=FAST)

    async def main() -> int:
        run = asyncio.create_task(jm.run())
        while not script.contexts:
            await asyncio.sleep(0.01)
        await jm.cancel()
        try:
            return await asyncio.wait_for(run, 20)
        finally:
            jm.executor.shutdown(wait=False)

    assert asyncio.run(main()) == 0
    assert jm.state is JobState.CANCELED and len(script.contexts) == 1


def test_a_cancel_during_the_restart_delay_starts_no_other_attempt(tmp_path: Path) -> None:
    script = Script(AttemptOutcome(OutcomeKind.FAILED, "slot lost"), AttemptOutcome(OutcomeKind.FINISHED))
    jm = _jobmaster(tmp_path, script, restart={"kind": "fixed-delay", "attempts": 2, "delay_ms": 60_000})

    async def main() -> int:
        run = asyncio.create_task(jm.run())
        while jm.state is not JobState.RESTARTING:
            await asyncio.sleep(0.01)
        await jm.cancel()
        try:
            return await asyncio.wait_for(run, 20)
        finally:
            jm.executor.shutdown(wait=False)

    assert asyncio.run(main()) == 0
    assert jm.state is JobState.CANCELED and len(script.contexts) == 1


def test_messages_of_a_connection_the_attempt_does_not_hold_are_dropped(tmp_path: Path) -> None:
    script = Script(block=True)
    jm = _jobmaster(tmp_path, script)

    async def main() -> None:
        run = asyncio.create_task(jm.run())
        while not script.contexts:
            await asyncio.sleep(0.01)
        stale = SlotConnection(0, object(), ("127.0.0.1", 1), 99)  # type: ignore[arg-type]
        jm.on_slot_message(stale, Prepared(tasks=1))
        jm.on_slot_lost(stale)  # a connection of an earlier attempt closing late
        await asyncio.sleep(0.05)
        assert not run.done()
        await jm.cancel()
        await asyncio.wait_for(run, 20)
        jm.executor.shutdown(wait=False)

    asyncio.run(main())
    assert jm.state is JobState.CANCELED
