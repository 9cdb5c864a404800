"""Checkpoint configuration in local mode: timeouts and tolerable failures, unaligned and aligned-timeout
checkpoints, the RocksDB backend with incremental checkpoints, and keyed timers across a restore.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from streamjob.worker.storage import list_snapshots
from streamjob.worker.testing import FaultInjector, LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import (
    KEYED_SUM,
    job_path,
    run_with_kill,
    savepoint_metadata,
    stop_with_savepoint,
    tree_digest,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FAULTY = job_path("faulty_snapshot.py")
TIMERS = job_path("timers.py")


@pytest.fixture
def file_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tmp_path_factory.mktemp("root").as_uri()


@pytest.fixture(params=["file", "s3"])
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_prefix"))
    return tmp_path_factory.mktemp("root").as_uri()


def failed_checkpoints(job: LocalJob) -> list[str]:
    return re.findall(r"checkpoint \d+ failed: (.*)", job.output())


def test_checkpoints_timing_out_fail_the_job_after_the_tolerable_number(file_root: str) -> None:
    with LocalJob(
        FAULTY, "mode=sleep", "sleep_ms=1500", "timeout=300", "tolerable=2", checkpoint_dir=f"{file_root}/checkpoints"
    ) as job:
        assert job.wait() == 5, job.describe()
    expired = [r for r in failed_checkpoints(job) if "expired" in r]
    assert len(expired) == 3, job.describe()
    assert re.search(r"job FAILED: checkpoint \d+ failed .* 2 consecutive checkpoint failures", job.output()), (
        job.describe()
    )


def test_unaligned_checkpoints_give_exact_results_across_a_kill(file_root: str) -> None:
    injector = FaultInjector(checkpoints=(2, 4), workers=2)
    events = run_with_kill(file_root, injector, args=["unaligned=1", "slow_us=400"])
    problem = keyed_sum.check_exactly_once(read_committed(f"{file_root}/out"), events)
    assert problem is None, f"{injector}: {problem}"
    retained = [row.location for row in list_snapshots(f"{file_root}/checkpoints") if row.kind == "checkpoint"]
    assert retained and all(savepoint_metadata(location).unaligned for location in retained)


def test_aligned_checkpoint_timeout_gives_exact_results_across_a_kill(file_root: str) -> None:
    """Unaligned with a 1 ms aligned timeout: checkpoints start aligned and switch at once (Flink's behaviour)."""
    injector = FaultInjector(checkpoints=(2, 4), workers=2)
    events = run_with_kill(file_root, injector, args=["unaligned=1", "aligned_timeout=1", "slow_us=400"])
    problem = keyed_sum.check_exactly_once(read_committed(f"{file_root}/out"), events)
    assert problem is None, f"{injector}: {problem}"


def test_rocksdb_incremental_checkpoints_give_exact_results_across_a_kill(root: str) -> None:
    injector = FaultInjector(checkpoints=(2, 4), workers=2)
    events = run_with_kill(root, injector, args=["rocksdb=1", "incremental=1"])
    problem = keyed_sum.check_exactly_once(read_committed(f"{root}/out"), events)
    assert problem is None, f"{injector}: {problem}"


def test_keyed_timers_survive_a_savepoint_and_fire_once_after_the_restore(file_root: str) -> None:
    out, checkpoints, keys = f"{file_root}/out", f"{file_root}/checkpoints", 8
    args = (f"out={out}", f"keys={keys}", "delay_ms=6000")
    with LocalJob(TIMERS, *args, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(2)
        job.poll("every key's first event committed", lambda: len({row[0] for row in read_committed(out)}) == keys, 30)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    before = read_committed(out)
    assert [row for row in before if row[1] == "fired"] == [], "the timers fired before the savepoint: too slow"
    timers = savepoint_metadata(savepoint).operators["timers"]
    assert sum(len(s.keyed) for s in timers.subtasks) > 0

    with LocalJob(TIMERS, *args, checkpoint_dir=checkpoints, restore=savepoint) as resumed:
        resumed.poll("a fired timer per key", lambda: sum(row[1] == "fired" for row in read_committed(out)) >= keys, 60)
        stop_with_savepoint(resumed)
        assert resumed.wait() == 0, resumed.describe()
    rows = read_committed(out)
    fired = Counter(row[0] for row in rows if row[1] == "fired")
    assert fired == Counter({f"t{k}": 1 for k in range(keys)})
    events: dict[str, list[int]] = defaultdict(list)
    for key, kind, n in rows:
        if kind == "event":
            events[key].append(n)
    for key, seen in events.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), f"{key}: events not exactly once"
    counted_before = {key: max(n for k, kind, n in before if k == key) for key in fired}
    for key, kind, n in rows:
        if kind == "fired":
            assert n >= counted_before[key], f"{key}: the timer saw count {n}, state was not restored"


def completed_checkpoint_ids(checkpoints: str) -> list[int]:
    return sorted(row.id for row in list_snapshots(checkpoints) if row.kind == "checkpoint" and row.id is not None)


def test_retention_keeps_the_newest_checkpoints(root: str) -> None:
    checkpoints = f"{root}/checkpoints"
    with LocalJob(
        KEYED_SUM,
        f"out={root}/out",
        "count=30000",
        "rate=500",
        "interval=500",
        "retained=2",
        checkpoint_dir=checkpoints,
    ) as job:
        job.wait_for_checkpoints(4)
        job.poll(
            "retention down to the newest 2 checkpoints",
            lambda: len(ids := completed_checkpoint_ids(checkpoints)) == 2 and ids[0] > 2,
            30,
            interval=0.2,
        )
        job.cancel()
        assert job.wait() == 0, job.describe()
    assert "job CANCELED" in job.output()
    assert completed_checkpoint_ids(checkpoints), "RETAIN_ON_CANCELLATION keeps the retained checkpoints"


def test_failing_snapshots_are_declined_checkpoints_within_the_tolerable_number(file_root: str) -> None:
    with LocalJob(
        FAULTY,
        "mode=raise",
        "failures=2",
        "tolerable=2",
        "count=900",
        "rate=600",
        checkpoint_dir=f"{file_root}/checkpoints",
    ) as job:
        assert job.wait() == 0, job.describe()
    assert len(failed_checkpoints(job)) >= 2, job.describe()
    assert "injected snapshot failure 1" in job.output()
    assert "job FINISHED" in job.output()


def test_failing_snapshots_beyond_the_tolerable_number_fail_the_job(file_root: str) -> None:
    with LocalJob(FAULTY, "mode=raise", "failures=-1", "tolerable=1", checkpoint_dir=f"{file_root}/checkpoints") as job:
        assert job.wait() == 5, job.describe()
    declined = [r for r in failed_checkpoints(job) if "injected snapshot failure" in r]
    assert len(declined) == 2, job.describe()
    assert re.search(r"job FAILED: checkpoint \d+ failed", job.output()), job.describe()


def test_savepoints_are_not_overtaken_by_periodic_checkpoints(file_root: str) -> None:
    with LocalJob(
        KEYED_SUM,
        f"out={file_root}/out",
        "count=30000",
        "rate=2000",
        "interval=20",
        "slow_us=400",
        "unaligned=1",
        checkpoint_dir=f"{file_root}/checkpoints",
    ) as job:
        job.wait_for_checkpoints(2)
        for _ in range(10):
            job.trigger_savepoint()
        job.trigger_savepoint(stop=True)
        assert job.wait() == 0, job.describe()


def test_delete_on_cancellation_leaves_nothing_behind(root: str) -> None:
    checkpoints = f"{root}/checkpoints"
    with LocalJob(
        KEYED_SUM,
        f"out={root}/out",
        "count=30000",
        "rate=500",
        "interval=100",
        "cleanup=delete",
        checkpoint_dir=checkpoints,
    ) as job:
        job.wait_for_checkpoints(3)
        job_id = job.job()["id"]
        job.cancel()
        assert job.wait() == 0, job.describe()
    assert "job CANCELED" in job.output()
    assert tree_digest(f"{checkpoints}/local/keyed-sum/{job_id}") == {}
