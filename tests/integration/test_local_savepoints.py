"""Savepoints and restores in local mode: rescaling, relocation, ``--restore latest`` after a stop.

Each test runs the keyed-sum job twice over the same FileSink output: the first run is stopped
(stop-with-savepoint, cancel, or a SIGKILLed JobMaster), the second restores and runs to the end;
together they must commit exactly the output of one failure-free run.
"""

from __future__ import annotations

import re

import pytest

from streamjob.worker.testing import LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import (
    KEYED_SUM,
    consumed_by_savepoint,
    copy_tree,
    delete_tree,
    stop_with_savepoint,
    tree_digest,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

COUNT = 20_000  # the first runs are stopped long before; the second runs read the rest unthrottled


@pytest.fixture(params=["file", "s3"])
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "s3":
        return str(request.getfixturevalue("s3_prefix"))
    return tmp_path_factory.mktemp("root").as_uri()


@pytest.fixture
def file_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tmp_path_factory.mktemp("root").as_uri()


def restored_checkpoint(job: LocalJob) -> int:
    return int(job.wait_for_line(r"attempt \d+ running, restored from (?:checkpoint|savepoint) (\d+)").group(1))


def first_run(out: str, checkpoints: str, parallelism: int = 2) -> LocalJob:
    return LocalJob(
        KEYED_SUM, f"out={out}", f"count={COUNT}", "rate=1000", parallelism=parallelism, checkpoint_dir=checkpoints
    )


def test_a_savepoint_named_in_the_code_is_restored_and_the_command_line_wins_over_it(file_root: str) -> None:
    """``env.execute_from_savepoint(path)`` before the pipeline (the seed's order) restores that savepoint.

    Before, ``streamjob run`` dropped the path and the job started with empty state: every key's counts
    restarted at 1, which ``check_exactly_once`` reports. ``--restore`` names what the run restores instead.
    """
    out, checkpoints = f"{file_root}/out", f"{file_root}/checkpoints"
    with first_run(out, checkpoints) as job:
        job.wait_for_checkpoints(2)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    taken = int(job.wait_for_line(r"savepoint (\d+) completed").group(1))
    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={COUNT}", "rate=0", f"from_savepoint={savepoint}", checkpoint_dir=checkpoints
    ) as resumed:
        assert resumed.wait() == 0, resumed.describe()
    assert restored_checkpoint(resumed) == taken
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem

    other = f"{file_root}/out-2"
    with first_run(other, f"{file_root}/checkpoints-2") as job:
        job.wait_for_checkpoints(4)  # a later savepoint id than the one the code names
        second = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    second_id = int(job.wait_for_line(r"savepoint (\d+) completed").group(1))
    assert second_id != taken
    with LocalJob(
        KEYED_SUM,
        f"out={other}",
        f"count={COUNT}",
        "rate=0",
        f"from_savepoint={savepoint}",
        checkpoint_dir=f"{file_root}/checkpoints-2",
        restore=second,
    ) as resumed:
        assert resumed.wait() == 0, resumed.describe()
    assert restored_checkpoint(resumed) == second_id
    problem = keyed_sum.check_exactly_once(read_committed(other), COUNT)
    assert problem is None, problem


@pytest.mark.parametrize(("before", "after"), [(1, 3), (3, 1)])
def test_stop_with_savepoint_then_restore_at_another_parallelism(file_root: str, before: int, after: int) -> None:
    out, checkpoints = f"{file_root}/out", f"{file_root}/checkpoints"
    with first_run(out, checkpoints, before) as job:
        job.wait_for_checkpoints(2)
        assert len(job.worker_pids()) == before
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert re.fullmatch(rf"{re.escape(checkpoints)}-savepoints/local/keyed-sum/savepoint-[\w-]+", savepoint)
    assert "job FINISHED" in job.output()
    read_before = consumed_by_savepoint(savepoint, COUNT)
    assert 0 < len(read_before) < COUNT
    assert keyed_sum.check_exactly_once(read_committed(out), read_before) is None

    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=0",
        parallelism=after,
        checkpoint_dir=checkpoints,
        restore=savepoint,
    ) as resumed:
        resumed.wait_for_line(rf"job 'keyed-sum' at parallelism {after};")
        assert resumed.wait() == 0, resumed.describe()
    assert restored_checkpoint(resumed) == int(job.wait_for_line(r"savepoint (\d+) completed").group(1))
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_savepoint_copied_elsewhere_restores_without_the_original(root: str, request: pytest.FixtureRequest) -> None:
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    with first_run(out, checkpoints) as job:
        job.wait_for_checkpoints(2)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    read_before = consumed_by_savepoint(savepoint, COUNT)
    assert 0 < len(read_before) < COUNT

    relocated = f"{root}/relocated/elsewhere/my-savepoint"
    if root.startswith("s3://"):
        other_bucket = "streamjob-relocated"
        client = request.getfixturevalue("s3").client()
        if other_bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
            client.create_bucket(Bucket=other_bucket)
        relocated = f"s3://{other_bucket}/{root.rsplit('/', 1)[-1]}/my-savepoint"
    assert copy_tree(savepoint, relocated) > 1
    delete_tree(savepoint)
    delete_tree(checkpoints)
    assert tree_digest(savepoint) == {}

    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={COUNT}", "rate=0", checkpoint_dir=f"{root}/checkpoints-2", restore=relocated
    ) as resumed:
        assert resumed.wait() == 0, resumed.describe()
    restored_checkpoint(resumed)
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_restore_latest_continues_a_cancelled_run(file_root: str) -> None:
    out, checkpoints = f"{file_root}/out", f"{file_root}/checkpoints"
    with first_run(out, checkpoints) as job:
        job.wait_for_checkpoints(2)
        taken = run_cli("savepoint", "--jobmaster", job.rest_url, "--timeout", "60s")
        assert taken.returncode == 0, taken.stderr
        assert "_metadata" in tree_digest(taken.stdout.strip()), taken.stdout
        assert job.job()["state"] == "RUNNING"
        job.cancel()
        assert job.wait() == 0, job.describe()
    assert "job CANCELED" in job.output()
    last = max(int(n) for n in re.findall(r"checkpoint (\d+) completed", job.output()))

    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={COUNT}", "rate=0", checkpoint_dir=checkpoints, restore="latest"
    ) as resumed:
        assert resumed.wait() == 0, resumed.describe()
    assert restored_checkpoint(resumed) == last
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_restore_latest_after_the_jobmaster_was_killed(file_root: str) -> None:
    out, checkpoints = f"{file_root}/out", f"{file_root}/checkpoints"
    with first_run(out, checkpoints) as job:
        job.wait_for_checkpoints(3)
        job.kill()
    assert job.returncode == -9

    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={COUNT}", "rate=0", checkpoint_dir=checkpoints, restore="latest"
    ) as resumed:
        assert resumed.wait() == 0, resumed.describe()
    assert restored_checkpoint(resumed) >= 3
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_cli_stop_with_savepoint_prints_the_location(file_root: str) -> None:
    out, checkpoints = f"{file_root}/out", f"{file_root}/checkpoints"
    with first_run(out, checkpoints, 1) as job:
        job.wait_for_checkpoints(2)
        result = run_cli("savepoint", "--stop", "--jobmaster", job.rest_url, "--timeout", "60s")
        assert job.wait() == 0, job.describe()
    assert result.returncode == 0, result.stderr
    savepoint = result.stdout.strip()
    assert re.fullmatch(rf"{re.escape(checkpoints)}-savepoints/local/keyed-sum/savepoint-[\w-]+", savepoint)
    assert "_metadata" in tree_digest(savepoint)
