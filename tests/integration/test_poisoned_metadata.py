"""A poisoned or damaged ``_metadata`` in the newest ``chk-<n>`` never blocks recovery or the listing.

A deeply nested JSON document used to raise an uncaught ``RecursionError`` (a traceback) from
``--restore latest``, the fallback to older checkpoints and ``streamjob checkpoints``. Now every
unreadable ``_metadata`` — too deep, too large, not JSON, wrong types, numbers out of range — is
skipped for "latest" with a warning and listed as CORRUPT; reading one is bounded in size and depth.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamjob.worker.snapshot.metadata import MAX_METADATA_BYTES
from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, copy_tree, finished_keyed_sum_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

COUNT = 600
_VALID = (
    '{"format_version": 1, "kind": "checkpoint", "checkpoint_id": %d, "job_id": "%s", "job_name": "keyed-sum", '
    '"namespace": "local", "trigger_timestamp_ms": 1, "completion_timestamp_ms": %s, "duration_ms": 0, '
    '"total_size": 0, "max_parallelism": 128, "mode": "EXACTLY_ONCE"}'
)

POISONS = {
    "deep": lambda cid, job: b'{"format_version": 1, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "shallow-but-deep": lambda cid, job: (
        b'{"format_version": 1, "source_positions": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}"
    ),
    "not-json": lambda cid, job: b"\x00\xffPK\x03\x04 not json at all",
    "wrong-types": lambda cid, job: (
        b'{"format_version": 1, "kind": "checkpoint", "checkpoint_id": "seven", "operators": [1, 2, 3]}'
    ),
    "out-of-range": lambda cid, job: (_VALID % (cid, job, "1" + "0" * 30)).encode(),
    "huge-number": lambda cid, job: (_VALID % (cid, job, "1e999")).encode(),
    "top-level-list": lambda cid, job: b"[1, 2, 3]",
}


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The root of a finished keyed-sum run (its checkpoints and its exact output)."""
    return finished_keyed_sum_run(tmp_path_factory.mktemp("completed").as_uri(), count=COUNT, rate=1200)


def _poisoned_copy(completed: str, tmp_path: Path, poison: str) -> tuple[str, int, int]:
    """A copy of the run whose newest checkpoint is followed by a poisoned chk-<n+1>; (root, good id, bad id)."""
    root = tmp_path.as_uri()
    copy_tree(f"{completed}/checkpoints", f"{root}/checkpoints")
    copy_tree(f"{completed}/out", f"{root}/out")
    good = max(
        (row for row in list_snapshots(f"{root}/checkpoints") if row.kind == "checkpoint"), key=lambda row: row.id or 0
    )
    assert good.id is not None and good.job_id is not None
    bad = good.id + 1
    job_dir = good.location.rsplit("/", 1)[0]
    if poison == "too-large":
        path = Path(open_store(job_dir).uri(f"chk-{bad}/_metadata").removeprefix("file://"))
        path.parent.mkdir(parents=True)
        with path.open("wb") as f:
            f.truncate(MAX_METADATA_BYTES + 1)  # sparse: costs no disk, but a reader would take 64 MiB
    else:
        open_store(job_dir).put(f"chk-{bad}/_metadata", POISONS[poison](bad, good.job_id))
    return root, good.id, bad


@pytest.mark.parametrize("poison", [*POISONS, "too-large"])
def test_restore_latest_skips_a_poisoned_newest_checkpoint(completed: str, tmp_path: Path, poison: str) -> None:
    root, good, bad = _poisoned_copy(completed, tmp_path, poison)

    listing = run_cli("checkpoints", f"{root}/checkpoints", timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr + listing.stdout
    corrupt = [line for line in listing.stdout.splitlines() if "CORRUPT" in line and f"chk-{bad}" in line]
    assert len(corrupt) == 2, listing.stdout  # its row, and the line saying what is wrong with it
    assert re.search(rf"checkpoint\s+{good}\s", listing.stdout), listing.stdout

    resumed = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        f"{root}/checkpoints",
        "--restore",
        "latest",
        KEYED_SUM,
        f"out={root}/out",
        f"count={COUNT}",
        "rate=0",
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert re.search(rf"running, restored from checkpoint {good}\b", resumed.stderr), resumed.stderr
    assert re.search(
        rf"skipping checkpoint {bad}: .*corrupt|skipping checkpoint {bad}: .*invalid|"
        rf"skipping checkpoint {bad}: .*bytes",
        resumed.stderr,
    ), resumed.stderr
    problem = keyed_sum.check_exactly_once(keyed_sum_rows(root), COUNT)
    assert problem is None, problem


def keyed_sum_rows(root: str) -> list[object]:
    from streamjob.worker.testing import read_committed

    return read_committed(f"{root}/out")


def test_restoring_a_poisoned_snapshot_explicitly_is_one_error_line(completed: str, tmp_path: Path) -> None:
    root, _, bad = _poisoned_copy(completed, tmp_path, "deep")
    job_dir = next(
        row.location
        for row in list_snapshots(f"{root}/checkpoints")
        if row.kind == "checkpoint" and row.problem is None
    ).rsplit("/", 1)[0]
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        f"{root}/checkpoints",
        "--restore",
        f"{job_dir}/chk-{bad}",
        KEYED_SUM,
        f"out={root}/out",
        f"count={COUNT}",
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1 and "nests deeper than" in result.error_lines[0], result.stderr
