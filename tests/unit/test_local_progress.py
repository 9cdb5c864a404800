"""``streamjob run``'s progress lines: record rates, the restore point's kind, what Ctrl-C does."""

from __future__ import annotations

import io

import pytest

from streamjob.worker.config import CheckpointSettings, ExternalizedCheckpointCleanup
from streamjob.worker.local import Progress, cancel_notice, restore_kind

pytestmark = pytest.mark.unit


def test_the_rate_covers_the_time_since_the_last_printed_count() -> None:
    progress = Progress(out=io.StringIO())
    progress.rate_from = (0, 100.0)
    assert progress.records_line(8_192, 105.0) == "8,192 records read (1,638/s)"
    # the slots' totals did not change for 5 s: the rate says so, and the next change is measured from here
    assert progress.records_line(8_192, 110.0) == "8,192 records read (0/s)"
    assert progress.records_line(16_384, 112.0) == "16,384 records read (4,096/s)"


def test_a_checkpoint_line_and_a_new_attempt_reset_the_rate_base() -> None:
    out = io.StringIO()
    progress = Progress(out=out)
    progress.event("checkpoint", {"id": 3, "duration_ms": 5, "size": 10, "records": 1_000, "location": "x"})
    assert progress.rate_from[0] == 1_000
    progress.event("running", {"attempt": 1, "restored_from": "file:///c/local/j/1/chk-3/_metadata", "checkpoint": 3})
    assert progress.rate_from[0] == 0
    assert "attempt 1 running, restored from checkpoint 3" in out.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"restored_from": "file:///ck/local/job/abc/chk-12/_metadata"}, "checkpoint"),
        ({"restored_from": "s3://b/sp/local/job/savepoint-1a2b3c/_metadata"}, "savepoint"),
        ({"restored_from": "file:///moved/anywhere/_metadata"}, "savepoint"),
        ({"restored_from": "file:///ck/local/job/abc/chk-12/_metadata", "kind": "savepoint"}, "savepoint"),
    ],
)
def test_the_restore_point_is_named_by_its_kind(data: dict[str, str], kind: str) -> None:
    assert restore_kind(data) == kind


def test_a_savepoint_restore_says_savepoint() -> None:
    out = io.StringIO()
    Progress(out=out).event(
        "running", {"attempt": 0, "checkpoint": 5, "restored_from": "file:///sp/local/j/savepoint-77/_metadata"}
    )
    assert out.getvalue() == "[streamjob] attempt 0 running, restored from savepoint 5\n"


def test_ctrl_c_says_what_happens_to_the_checkpoints() -> None:
    keep = cancel_notice(CheckpointSettings(interval_ms=1000))
    assert "checkpoints are kept" in keep and "--restore latest" in keep
    delete = cancel_notice(
        CheckpointSettings(interval_ms=1000, externalized_cleanup=ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION)
    )
    assert "deleting its checkpoints" in delete and "kept" not in delete.split(";")[0]
    assert "checkpointing is off" in cancel_notice(CheckpointSettings())
    assert all(n.startswith("interrupted: cancelling the job") for n in (keep, delete))


def test_a_checkpoint_line_shows_the_full_size_and_what_an_incremental_checkpoint_wrote() -> None:
    out = io.StringIO()
    progress = Progress(out=out)
    base = {"duration_ms": 5, "records": 1, "location": "x"}
    progress.event("checkpoint", {"id": 1, "size": 9_856_000, "incremental_size": 9_856_000, **base})
    progress.event("checkpoint", {"id": 2, "size": 9_856_000, "incremental_size": 98_304, **base})
    progress.event("checkpoint", {"id": 3, "size": 2_048, **base})  # an older JobMaster's event
    lines = out.getvalue().splitlines()
    assert "checkpoint 1 completed in 5 ms (9.4 MiB) " in lines[0]
    assert "checkpoint 2 completed in 5 ms (9.4 MiB, 96.0 KiB written) " in lines[1]
    assert "checkpoint 3 completed in 5 ms (2.0 KiB) " in lines[2]
