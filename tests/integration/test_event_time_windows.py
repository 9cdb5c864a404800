"""Event-time windows exactly once through real faults, on hashmap and RocksDB.

The job (``jobs/event_windows.py``) aggregates tumbling 1 s event-time windows fed by a generator
with bounded out-of-orderness; the output must be exactly the failure-free run's (every window of
every key once, with its exact count and sum) after a worker SIGKILL mid-window, and across a
rescale from a stop-with-savepoint at p=3 -> 1 and 1 -> 3 (window contents and event-time timers
move by key group; the bounded input's final watermark fires the last windows).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import event_windows
from tests.integration.jobs.support import job_path, stop_with_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKENDS = {"hashmap": [], "rocksdb": ["rocksdb=1"]}
JOB = job_path("event_windows.py")


def _sorted(rows: list[list[object]]) -> list[list[object]]:
    return sorted(rows, key=lambda r: (str(r[0]), int(r[1])))  # type: ignore[call-overload]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_event_time_windows_exactly_once_through_a_worker_kill(tmp_path: Path, backend: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 4000, 10
    with LocalJob(
        JOB,
        f"out={out}",
        f"count={count}",
        f"keys={keys}",
        "rate=500",
        *BACKENDS[backend],
        checkpoint_dir=(tmp_path / "chk").as_uri(),
    ) as job:
        job.wait_for_checkpoints(3)
        assert job.job()["state"] == "RUNNING", job.describe()
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None, info
        assert job.wait(timeout=200) == 0, job.describe()
    assert _sorted(read_committed(out)) == event_windows.expected(count, keys)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3)])
def test_event_time_windows_rescale_from_a_savepoint(tmp_path: Path, backend: str, before: int, after: int) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    args = [f"out={out}", f"count={count}", f"keys={keys}", "rate=500", *BACKENDS[backend]]
    checkpoints = (tmp_path / "chk").as_uri()
    with LocalJob(JOB, *args, parallelism=before, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(3)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert len(read_committed(out)) < len(event_windows.expected(count, keys)), "stopped too late to test anything"
    with LocalJob(JOB, *args, parallelism=after, restore=savepoint, checkpoint_dir=checkpoints) as job:
        assert job.wait(timeout=200) == 0, job.describe()
    assert _sorted(read_committed(out)) == event_windows.expected(count, keys)


def test_an_idle_input_stops_holding_the_watermark_back(tmp_path: Path) -> None:
    """Events 0, 100, ..., 2900 ms: windows [0, 1000), [1000, 2000), [2000, 3000) of 10 each.

    Both runs wait for the events source's end and for checkpoints after it; only the run whose
    strategy has idleness fires the windows (the silent input is left out of the minimum).
    """
    want = ["window k 0 10", "window k 1000 10", "window k 2000 10"]
    with LocalJob(job_path("idle_windows.py"), "idle=1", checkpoint_dir=(tmp_path / "a").as_uri()) as job:
        job.poll(
            "all three windows", lambda: [ln for ln in job.stdout_lines if ln.startswith("window")] == want, timeout=60
        )
        job.cancel()
    with LocalJob(job_path("idle_windows.py"), checkpoint_dir=(tmp_path / "b").as_uri()) as job:
        job.wait_for_checkpoints(5)  # well after the 30 events and the 300 ms idleness timeout
        assert [ln for ln in job.stdout_lines if ln.startswith("window")] == []
        job.cancel()


def test_event_time_timers_fire_in_watermark_order_and_at_the_end_of_input(tmp_path: Path) -> None:
    """By hand (``jobs/event_timers.py``): timers a@1000, b@1500 (deleted), a@2200, b@2600, a@6000.

    The whole input is one batch, so the first watermark (4999) comes after every event: it fires
    the timers up to 2600 in time order, each seeing the key's count of all its events; the end
    of input's maximum watermark fires the one at 6000.
    """
    with LocalJob(job_path("event_timers.py"), checkpoint_dir=(tmp_path / "chk").as_uri()) as job:
        assert job.wait(timeout=120) == 0, job.describe()
        lines = [ln for ln in job.stdout_lines if ln.startswith("timer")]
        events = [ln for ln in job.stdout_lines if ln.startswith("event")]
    assert events == ["event a 0", "event b 500", "event a 1200", "event b 1600", "event a 5000"]
    assert lines == [
        "timer a 1000 event_time 3",
        "timer a 2200 event_time 3",
        "timer b 2600 event_time 2",
        "timer a 6000 event_time 3",
    ]
