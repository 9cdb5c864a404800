"""Unaligned checkpoints really persist in-flight records, and a restore replays them exactly once.

A slow keyed stage behind fast sources keeps batches queued in front of it; unaligned barriers
overtake them, so checkpoints carry channel state. The test waits until a completed checkpoint
holds in-flight records, kills a worker, lets the job restore, and checks the committed output.
"""

from __future__ import annotations

import pytest

from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import LocalJob, read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import (
    KEYED_SUM,
    LONG,
    consumed_by_savepoint,
    savepoint_metadata,
    stop_with_savepoint,
)

pytestmark = pytest.mark.integration


def _in_flight_records(checkpoints: str) -> tuple[str | None, int]:
    """A completed checkpoint with channel state, and how many records it holds."""
    for row in list_snapshots(checkpoints):
        if row.kind != "checkpoint" or row.problem is not None:
            continue
        meta = savepoint_metadata(row.location)
        handles = [h for op in meta.operators.values() for s in op.subtasks for h in s.channel]
        if not handles:
            continue
        base = open_store(row.location.rsplit("/chk-", 1)[0])
        records = sum(len(SafeSerializer().decode(base.get(h.path))) for h in handles)
        if records:
            return row.location, records
    return None, 0


def test_unaligned_checkpoint_stores_in_flight_records_and_restores_them_exactly(tmp_path: object) -> None:
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    found: tuple[str | None, int] = (None, 0)
    with LocalJob(KEYED_SUM, f"out={out}", f"count={LONG}", "rate=4000", "unaligned=1", "slow_us=300",
                  "interval=150", "retained=100", checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(2)

        def stored() -> bool:
            nonlocal found
            found = _in_flight_records(checkpoints)
            return found[0] is not None

        job.poll("a completed checkpoint holding in-flight records", stored, 60)
        job.kill_worker(1)
        job.wait_for_running(restarts=1)
        job.wait_for_checkpoints(job.checkpoints()["counts"]["completed"] + 1)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    location, records = found
    assert location is not None and records > 0
    events = consumed_by_savepoint(savepoint, LONG)
    problem = keyed_sum.check_exactly_once(read_committed(out), events)
    assert problem is None, f"in-flight records in {location}: {records}; {problem}"
