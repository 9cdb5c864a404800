"""The JobMaster holds the deployment of its first attempt for the rest of a restart backoff."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.jobmaster import AttemptOutcome, JobMaster, resolve_plan
from streamjob.worker.loader import load_job

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"


def _jobmaster(tmp_path: Path, hold_s: float | None) -> JobMaster:
    loaded = load_job(str(EXAMPLE), [])
    config = parse_job_config(
        {"name": "hold", "entrypoint": str(EXAMPLE), "checkpoints_uri": tmp_path.as_uri()}, source="(test)"
    )
    plan = resolve_plan(config, loaded, default_checkpoints_uri=tmp_path.as_uri())
    return JobMaster(plan, hold_deploy_until=None if hold_s is None else time.monotonic() + hold_s)


def test_holds_until_the_backoff_is_over_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, float, bool]:
        jm = _jobmaster(tmp_path, 0.3)
        jm._outcome = asyncio.get_running_loop().create_future()
        began = time.monotonic()
        held = await jm._hold_deploy()
        waited = time.monotonic() - began
        return held, waited, await jm._hold_deploy()  # a later attempt is not held again

    held, waited, again = asyncio.run(scenario())
    assert held and again
    assert 0.25 <= waited < 2.0


def test_a_failure_while_holding_ends_the_hold_at_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, float]:
        jm = _jobmaster(tmp_path, 30.0)
        jm._outcome = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, jm.fail, "worker slot 0 was lost")
        began = time.monotonic()
        held = await jm._hold_deploy()
        assert jm._outcome.result() == AttemptOutcome("failed", "worker slot 0 was lost")
        return held, time.monotonic() - began

    held, waited = asyncio.run(scenario())
    assert not held and waited < 5.0


def test_no_hold_without_a_backoff(tmp_path: Path) -> None:
    async def scenario() -> bool:
        jm = _jobmaster(tmp_path, None)
        jm._outcome = asyncio.get_running_loop().create_future()
        return await jm._hold_deploy()

    assert asyncio.run(scenario())
