"""Local mode, real processes: slot sharing groups put a p=1 job's keyed step in a second slot process.

Issue 14 (item 1): ``.slot_sharing_group("keyed")`` on the keyed step makes the job need one slot
per group; the source's chain and the keyed chain run in different processes (checked by the pids
the records carry), and placement by ``JobGraph.slot_of`` holds through a SIGKILLed slot (restore
from a checkpoint), a savepoint restored at p=2 and back at p=1, and a rescale in place: the
keyed-sum job's exactly-once output is checked exactly each time.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs.support import (
    assert_exactly_once_until,
    job_path,
    long_keyed_sum,
    stop_with_savepoint,
)
from tests.integration.test_rescale_in_place import _rescale

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GROUP = "group=keyed"


def test_a_p1_job_in_two_groups_runs_in_two_slot_processes_with_exact_output(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = f"{tmp_path_factory.mktemp('placement').as_uri()}/out"
    count = 2000
    with LocalJob(job_path("slot_groups.py"), f"out={out}", f"count={count}") as job:
        job.wait_for_line(r"job 'slot-groups' at parallelism 1 in 2 slots \(slot sharing groups\);")
        assert job.wait() == 0, job.describe()
    records = read_committed(out)
    assert sorted(r[1] for r in records) == list(range(count)), "every number exactly once"
    map_pids, keyed_pids = {r[2] for r in records}, {r[3] for r in records}
    assert len(map_pids) == 1 and len(keyed_pids) == 1 and map_pids != keyed_pids, (map_pids, keyed_pids)
    assert job.pid not in map_pids | keyed_pids, "both steps ran in slot processes, not the JobMaster"
    counts: dict[int, list[int]] = defaultdict(list)
    for key, i, _, _, n in sorted(records, key=lambda r: r[1]):
        assert key == i % 5
        counts[key].append(n)
    assert all(ns == list(range(1, len(ns) + 1)) for ns in counts.values()), "keyed state counted each record once"


def test_sigkilled_slots_of_either_group_restore_with_exact_output(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("ssg-failover").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "restarts=10",
        GROUP,
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=1,
    ) as job:
        job.wait_for_checkpoints(1)
        info = job.overview()
        assert (info.parallelism, info.slots, len(info.workers)) == (1, 2, 2), info
        assert {v.id: v.slot_group for v in info.vertices} == {"events": "default", "sums": "keyed"}
        for kill, victim in enumerate((1, 0), start=1):  # the keyed slot, then the source's
            pids = job.worker_pids()
            killed = job.kill_worker(victim)
            running = job.wait_for_running(restarts=kill)
            assert running["restored_from"] is not None and "/chk-" in running["restored_from"], running
            after = job.worker_pids()
            assert killed not in after and len(after) == 2, job.describe()
            assert pids[1 - victim] in after, "the other group's slot stays"
            done = job.checkpoints()["counts"]["completed"]
            job.wait_for_checkpoints(done + 1)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)


def test_a_savepoint_with_groups_restores_at_p2_and_back_at_p1_with_exact_state(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("ssg-savepoints").as_uri()
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    savepoint: str | None = None
    for parallelism, slots in ((1, 2), (2, 4), (1, 2)):
        with long_keyed_sum(
            out,
            "max_parallelism=16",
            GROUP,
            checkpoint_dir=checkpoints,
            parallelism=parallelism,
            restore=savepoint,
        ) as job:
            job.wait_for_line(rf"at parallelism {parallelism} in {slots} slots \(slot sharing groups\);")
            job.wait_for_checkpoints(1)
            assert len(job.worker_pids()) == slots
            savepoint = stop_with_savepoint(job)
            assert job.wait() == 0, job.describe()
    assert savepoint is not None
    assert_exactly_once_until(savepoint, out)


def test_a_rescale_in_place_with_groups_takes_the_groups_slots(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("ssg-rescale").as_uri()
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        "max_parallelism=16",
        GROUP,
        checkpoint_dir=f"{root}/checkpoints",
        parallelism=1,
    ) as job:
        job.wait_for_checkpoints(1)
        up = _rescale(job, 2)
        assert (up.parallelism, up.slots, len(up.workers)) == (2, 4, 4), up
        assert up.rescale is not None and (up.rescale.source, up.rescale.target) == (1, 2)
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 1)
        down = _rescale(job, 1)
        assert (down.parallelism, down.slots, len(down.workers)) == (1, 2, 2), down
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 1)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    assert_exactly_once_until(savepoint, out)
