"""Incremental hashmap checkpoints through real processes: a SIGKILLed worker, then rescales 2 -> 3 -> 1.

The keyed-sum job runs with ``incremental=1`` (hashmap) over 2,000 keys, so that a checkpoint
interval changes a part of them and checkpoints write deltas (chunk chains, ``state/chunks.py``).
A worker is killed; the job restores from an incremental checkpoint; it is cancelled and restored
from its latest retained checkpoint at parallelism 3, cancelled again and restored at parallelism 1,
which reads to the end. Together the runs must commit exactly the output of one failure-free run,
and the checkpoints restored must hold delta chains (else the test did not test them).
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.snapshot.metadata import CheckpointMetadata
from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, savepoint_metadata

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNT, KEYS = 40_000, 2000


def chained_chunks(meta: CheckpointMetadata) -> int:
    """How many chunks of the keyed-sum reduce are a full file followed by deltas."""
    chunks: dict[tuple[int, Any, Any], int] = {}
    for subtask in meta.operators["sums"].subtasks:
        for handle in subtask.keyed:
            at = (subtask.subtask_index, handle.key_group_start, handle.key_group_end)
            chunks[at] = chunks.get(at, 0) + 1
    return sum(1 for files in chunks.values() if files > 1)


def restored_metadata(job: LocalJob) -> CheckpointMetadata:
    restored = job.job()["restored_from"]
    assert restored is not None and "/chk-" in restored, restored
    return savepoint_metadata(restored.removesuffix("/_metadata"))


def test_incremental_hashmap_state_is_exact_after_a_kill_and_rescales_2_3_1(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("root").as_uri()
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    args = (f"out={out}", f"count={COUNT}", f"keys={KEYS}", "incremental=1", "retained=2")
    with LocalJob(KEYED_SUM, *args, "rate=1000", parallelism=2, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(4, timeout=120)
        history = [e for e in job.checkpoints()["history"] if e["status"] == "COMPLETED" and e["kind"] == "checkpoint"]
        assert any(e["incremental_size"] < e["size"] for e in history), history
        killed = job.kill_worker(1)
        job.wait_for_running(restarts=1, timeout=120)
        assert killed not in job.worker_pids()
        assert chained_chunks(restored_metadata(job)) > 0, "the kill was restored from a checkpoint without deltas"
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 4, timeout=120)
        job.cancel()
        assert job.wait() == 0, job.describe()

    with LocalJob(
        KEYED_SUM, *args, "rate=1000", parallelism=3, checkpoint_dir=checkpoints, restore="latest"
    ) as rescaled:
        rescaled.wait_for_line(r"job 'keyed-sum' at parallelism 3;")
        rescaled.wait_for_line(r"attempt 0 running, restored from checkpoint")
        assert chained_chunks(restored_metadata(rescaled)) > 0
        rescaled.wait_for_checkpoints(5, timeout=120)
        rescaled.cancel()
        assert rescaled.wait() == 0, rescaled.describe()

    with LocalJob(KEYED_SUM, *args, "rate=2000", parallelism=1, checkpoint_dir=checkpoints, restore="latest") as last:
        last.wait_for_line(r"job 'keyed-sum' at parallelism 1;")
        last.wait_for_line(r"attempt 0 running, restored from checkpoint")
        assert chained_chunks(restored_metadata(last)) > 0, "the 3 -> 1 rescale restored no delta chain"
        assert last.wait(timeout=180) == 0, last.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT, KEYS)
    assert problem is None, problem
