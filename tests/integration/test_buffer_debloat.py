"""Buffer debloating with real processes: aligned checkpoints behind a slow sink, and exact output as speeds change.

Without debloating, a sink needing 1 ms per record behind unthrottled sources queues 8 batches of
4,096 records per channel, and an aligned barrier waits behind all of them (the issue measured
48.8 s at p=2). With it (on by default) each channel holds about 1 s of its consumer's throughput.
"""

from __future__ import annotations

import statistics

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, consumed_by_savepoint, stop_with_savepoint

pytestmark = pytest.mark.integration


def _completed(job: LocalJob) -> list[dict[str, object]]:
    return [r for r in job.checkpoints()["history"] if r["kind"] == "checkpoint" and r["status"] == "COMPLETED"]


def test_an_aligned_checkpoint_behind_a_1ms_per_record_sink_completes_within_2s(tmp_path: object) -> None:
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    count = 1_000_000  # never reached: the job is stopped with a savepoint
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={count}",
        "rate=0",
        "slow_us=1000",
        "interval=500",
        "retained=100",
        checkpoint_dir=checkpoints,
    ) as job:
        job.poll("5 completed checkpoints behind the slow sink", lambda: len(_completed(job)) >= 5, 90, interval=0.2)
        durations = [int(r["duration_ms"]) for r in _completed(job)]  # type: ignore[call-overload]
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    print(f"aligned checkpoint durations behind the 1 ms/record sink (ms): {durations}")
    # Every checkpoint, the first included (debloating starts with small batches), waits for about
    # 1 s of the sink's work per channel, not for 8 x 4,096 records.
    assert statistics.median(durations) <= 2000, durations
    assert max(durations) <= 3000, durations
    events = consumed_by_savepoint(savepoint, count)
    assert 0 < len(events) < count
    problem = keyed_sum.check_exactly_once(read_committed(out), events)
    assert problem is None, problem


def test_output_stays_exact_while_the_sink_changes_speed_and_a_worker_is_killed(tmp_path: object) -> None:
    # The sink alternates between 1 ms per record and no delay every 300 ms: the batch caps shrink
    # and grow again, batches are split at the channels, and a worker is SIGKILLed in the middle.
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    count = 40_000
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={count}",
        "rate=8000",  # >= 5 s however fast the machine; 4x what the sink takes in its slow phases
        "slow_us=1000",
        "slow_phase_ms=300",
        "interval=300",
        "restarts=3",
        checkpoint_dir=checkpoints,
    ) as job:
        job.wait_for_checkpoints(2, timeout=90)
        job.kill_worker(1)
        assert job.wait(timeout=180) == 0, job.describe()
        assert "restarting" in job.output(), job.describe()  # it recovered from the kill, then finished
    problem = keyed_sum.check_exactly_once(read_committed(out), count)
    assert problem is None, problem
