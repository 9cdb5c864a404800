"""Savepoint semantics (Flink >= 1.15): an intermediate savepoint commits nothing and is no recovery point.

The old runtime notified completion for every savepoint, so a FileSink committed its output up to
the savepoint; a worker crash before the next checkpoint restored the checkpoint before the savepoint
and committed that interval's records again (tens of thousands of duplicated records). Each test
runs the keyed-sum job (FileSink, EXACTLY_ONCE) with periodic checkpoints far apart (60 s), takes
its checkpoints and savepoints through REST, and compares the committed output with a failure-free
run's, record by record.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.testing import JobError, LocalJob, read_committed, read_committed_files
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, consumed_by_savepoint, savepoint_metadata

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

COUNT = 12_000
RATE = "2000"  # events/s: the job runs ~6 s unless it is stopped or restored


# -- REST calls that change the job: one place each, so that adding a bearer token is one line ---------


def rest_post(job: LocalJob, path: str, body: dict[str, Any] | None = None) -> Any:
    """Every mutating REST call of these tests."""
    return job.post(path, body)


def take_savepoint(job: LocalJob, *, stop: bool = False) -> str:
    """``POST /savepoints`` (through ``rest_post``) and waits for it; returns the savepoint directory."""
    started = rest_post(job, "/savepoints", {"stop": stop})
    request_id = started["request_id"]

    def done() -> str | None:
        try:
            status = job.get(f"/savepoints/{request_id}")
        except JobError:
            status = None  # stop-with-savepoint: the API may be gone with the job
        if status is not None and status["status"] == "FAILED":
            raise JobError(f"savepoint failed: {status['reason']}\n{job.describe()}")
        if status is not None and status["status"] == "COMPLETED":
            return str(status["location"])
        return None

    if not stop:
        return str(job.poll("the savepoint", done, 60))
    line = job.wait_for_line(rf"savepoint {started['checkpoint_id']} completed .* — (\S+)/_metadata$")
    return line.group(1)


def take_checkpoint(job: LocalJob) -> str:
    """``POST /checkpoints`` and waits for it; returns the checkpoint directory."""
    cid = int(rest_post(job, "/checkpoints")["id"])

    def done() -> str | None:
        latest = job.checkpoints()["latest"]["completed"]
        if latest is not None and latest["id"] >= cid:
            return str(latest["location"]).removesuffix("/_metadata")
        return None

    return str(job.poll(f"checkpoint {cid}", done, 60))


def wait_until_committed(job: LocalJob, out: str, events: list[int]) -> None:
    """Waits until the sinks committed exactly ``events`` (they commit after the checkpoint's completion)."""
    job.poll("the sinks' commit", lambda: keyed_sum.check_exactly_once(read_committed(out), events) is None, 60)


def checkpoint_lines(job: LocalJob) -> list[str]:
    return [line for line in job.output().splitlines() if "] checkpoint " in line and " completed " in line]


def start(out: str, checkpoints: str, *, restore: str | None = None, rate: str = RATE) -> LocalJob:
    return LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        f"rate={rate}",
        "interval=60000",
        parallelism=2,
        checkpoint_dir=checkpoints,
        restore=restore,
    ).start()


def wait_for_records(job: LocalJob, records: int) -> None:
    job.poll(f"{records} records read", lambda: job.job()["records_in"] >= records, 60)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_worker_crash_after_an_intermediate_savepoint_duplicates_nothing(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    root = str(request.getfixturevalue("s3_prefix")) if kind == "s3" else tmp_path.as_uri()
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    with start(out, checkpoints) as job:
        wait_for_records(job, 1_000)
        first = take_checkpoint(job)
        read_at_checkpoint = keyed_sum.consumed(savepoint_metadata(first).source_positions["events"], COUNT)
        wait_until_committed(job, out, read_at_checkpoint)
        wait_for_records(job, 3_000)
        committed = read_committed_files(out)
        assert committed, "the checkpoint committed the first records"
        savepoint = take_savepoint(job)
        # the FileSink did not commit at the savepoint: the committed files are exactly those of the checkpoint
        assert read_committed_files(out) == committed
        assert len(checkpoint_lines(job)) == 1, "no other checkpoint may complete before the crash"
        job.kill_worker(0)
        info = job.wait_for_running(restarts=1)
        assert info["restored_from"] == f"{first}/_metadata", "recovery restores the checkpoint, not the savepoint"
        assert job.wait() == 0, job.describe()
    read_at_savepoint = consumed_by_savepoint(savepoint, COUNT)
    assert len(read_at_checkpoint) < len(read_at_savepoint) < COUNT, "the savepoint covers records after the checkpoint"
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_the_next_checkpoint_commits_the_savepoint_interval_exactly(tmp_path: Any) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "checkpoints").as_uri()
    with start(out, checkpoints) as job:
        wait_for_records(job, 1_000)
        first = take_checkpoint(job)
        wait_for_records(job, 2_500)
        savepoint = take_savepoint(job)
        wait_for_records(job, 4_000)
        second = take_checkpoint(job)
        # exactly the records the sources had read at the second checkpoint: the savepoint's interval once
        at_second = keyed_sum.consumed(savepoint_metadata(second).source_positions["events"], COUNT)
        assert len(consumed_by_savepoint(savepoint, COUNT)) < len(at_second) < COUNT
        wait_until_committed(job, out, at_second)  # the savepoint's interval once, nothing after the checkpoint
        # a crash now restores the second checkpoint, whose state holds nothing the first already committed
        job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert info["restored_from"] == f"{second}/_metadata"
        assert job.wait() == 0, job.describe()
    assert first != second
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_stop_with_savepoint_commits_the_intermediate_savepoints_too_and_restores_exactly(tmp_path: Any) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "checkpoints").as_uri()
    with start(out, checkpoints) as job:
        wait_for_records(job, 1_000)
        take_checkpoint(job)
        wait_for_records(job, 2_000)
        take_savepoint(job)
        wait_for_records(job, 3_000)
        stopped = take_savepoint(job, stop=True)
        assert job.wait() == 0, job.describe()
    assert "job FINISHED" in job.output()
    read_before = consumed_by_savepoint(stopped, COUNT)
    assert 3_000 <= len(read_before) < COUNT
    problem = keyed_sum.check_exactly_once(read_committed(out), read_before)
    assert problem is None, f"stop-with-savepoint must commit everything before it: {problem}"

    with start(out, checkpoints, restore=stopped, rate="0") as resumed:
        assert resumed.wait() == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_restoring_an_intermediate_savepoint_commits_its_pending_output(tmp_path: Any) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "checkpoints").as_uri()
    with start(out, checkpoints) as job:
        wait_for_records(job, 1_000)
        first = take_checkpoint(job)
        at_checkpoint = keyed_sum.consumed(savepoint_metadata(first).source_positions["events"], COUNT)
        wait_until_committed(job, out, at_checkpoint)
        wait_for_records(job, 3_000)
        savepoint = take_savepoint(job)
        job.kill()  # the whole job (JobMaster and slots): nothing after the savepoint is committed
    assert keyed_sum.check_exactly_once(read_committed(out), at_checkpoint) is None
    at_savepoint = consumed_by_savepoint(savepoint, COUNT)
    assert len(at_checkpoint) < len(at_savepoint)

    with start(out, checkpoints, restore=savepoint, rate="0") as resumed:
        resumed.wait_for_line(r"attempt \d+ running, restored from savepoint")
        assert resumed.wait() == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem
