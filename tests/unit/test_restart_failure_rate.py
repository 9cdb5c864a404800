"""The failure-rate restart strategy (Flink's): N failures within the interval end the job, spaced ones restart it.

The decision is pure (``RestartStrategy.delay_for`` over the failure times); the JobMaster's restart
loop is driven by scripted attempts that fail at once or after a pause longer than the interval.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from streamjob.worker.api import RestartStrategies
from streamjob.worker.config import RestartStrategy, parse_job_config
from streamjob.worker.errors import ConfigError
from streamjob.worker.jobmaster.attempt import Attempt, AttemptContext, AttemptOutcome, OutcomeKind
from streamjob.worker.protocol.rest import JobState
from streamjob.worker.storage.snapshots import LoadedSnapshot
from tests.unit.test_jobmaster_restarts import Script, _jobmaster, _run

pytestmark = pytest.mark.unit


def test_the_api_builds_the_strategy_and_job_json_accepts_it() -> None:
    strategy = RestartStrategies.failure_rate_restart(3, timedelta(minutes=5), timedelta(seconds=10))
    assert strategy == RestartStrategy(
        kind="failure-rate", max_failures_per_interval=3, failure_rate_interval_ms=300_000, delay_ms=10_000
    )
    config = parse_job_config(
        {
            "name": "j",
            "entrypoint": "x:y",
            "restart": {"kind": "failure-rate", "max_failures_per_interval": 2, "failure_rate_interval_ms": 1000},
        },
        source="job.json",
    )
    assert config.restart is not None and config.restart.kind == "failure-rate"
    with pytest.raises(ConfigError, match="max_failures_per_interval"):
        parse_job_config(
            {"name": "j", "entrypoint": "x:y", "restart": {"kind": "failure-rate", "max_failures_per_interval": 0}},
            source="job.json",
        )


def test_the_nth_failure_within_the_interval_gives_up_and_spaced_failures_restart() -> None:
    rate = RestartStrategy(kind="failure-rate", max_failures_per_interval=3, failure_rate_interval_ms=1000, delay_ms=7)
    assert rate.delay_for(1, [0]) == 7
    assert rate.delay_for(2, [0, 400]) == 7
    assert rate.delay_for(3, [0, 400, 1000]) is None  # 3 failures within 1 s (the bound included)
    assert rate.delay_for(3, [0, 400, 1001]) == 7  # the oldest of the last 3 is out of the interval
    spaced = [i * 600.0 for i in range(50)]  # any 3 consecutive span 1200 ms: restarts for ever
    assert all(rate.delay_for(n, spaced[:n]) == 7 for n in range(1, 51))
    assert rate.delay_for(6, [0, 2000, 4000, 4100, 4200, 4300]) is None  # a late burst still ends it
    once = RestartStrategy(kind="failure-rate", max_failures_per_interval=1, failure_rate_interval_ms=1000)
    assert once.delay_for(1, [0]) is None  # Flink: one failure per interval allowed means none restarts


class PausedScript(Script):
    """Attempts that run ``pause_s`` before they end with the scripted outcome."""

    def __init__(self, *outcomes: AttemptOutcome, pause_s: float) -> None:
        super().__init__(*outcomes)
        self.pause_s = pause_s

    def __call__(self, ctx: AttemptContext) -> Attempt:
        attempt = super().__call__(ctx)
        scripted = attempt.run
        pause = self.pause_s

        async def run(restore: LoadedSnapshot | None) -> AttemptOutcome:
            await asyncio.sleep(pause)
            return await scripted(restore)

        attempt.run = run  # type: ignore[method-assign]
        return attempt


def failed(n: int) -> list[AttemptOutcome]:
    return [AttemptOutcome(OutcomeKind.FAILED, f"boom {i}") for i in range(n)]


def test_a_job_failing_n_times_within_the_interval_fails_for_good(tmp_path: Path) -> None:
    script = Script(*failed(5), AttemptOutcome(OutcomeKind.FINISHED))
    restart = {
        "kind": "failure-rate",
        "max_failures_per_interval": 3,
        "failure_rate_interval_ms": 60_000,
        "delay_ms": 0,
    }
    jm = _jobmaster(tmp_path, script, restart=restart)
    assert _run(jm) == 5
    assert jm.state is JobState.FAILED and jm.failure == "boom 2" and len(script.contexts) == 3


def test_failures_spaced_beyond_the_interval_keep_restarting(tmp_path: Path) -> None:
    # Each attempt runs 0.15 s before failing: any 2 consecutive failures are > 0.1 s apart.
    script = PausedScript(*failed(5), AttemptOutcome(OutcomeKind.FINISHED), pause_s=0.15)
    restart = {"kind": "failure-rate", "max_failures_per_interval": 2, "failure_rate_interval_ms": 100, "delay_ms": 0}
    jm = _jobmaster(tmp_path, script, restart=restart)
    assert _run(jm) == 0
    assert jm.state is JobState.FINISHED and jm.restarts == 5 and len(script.contexts) == 6
