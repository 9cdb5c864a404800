"""A restore point whose state files are gone or damaged fails the job at once, with a way out.

Restarting would read the same files again: the job used to restart under its strategy forever
(a fixed-delay strategy with many attempts looked like a hang). Also: checkpoint ids never repeat
across the attempts of one run, even when a checkpoint expired before it wrote anything.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import run_cli
from tests.integration.jobs.support import KEYED_SUM, copy_tree, finished_keyed_sum_run, tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The checkpoints root of a finished keyed-sum run (at least one completed checkpoint)."""
    return finished_keyed_sum_run(tmp_path_factory.mktemp("completed").as_uri())


def _damaged_copy(completed: str, tmp_path: Path, damage: str) -> tuple[str, str]:
    copied = (tmp_path / "copy").as_uri()
    copy_tree(f"{completed}/checkpoints", f"{copied}/checkpoints")
    rows = [row for row in list_snapshots(f"{copied}/checkpoints") if row.kind == "checkpoint"]
    target = rows[0].location
    store = open_store(target)
    state = sorted(info.key for info in store.list("") if info.key.endswith(".keyed"))[0]
    if damage == "missing":
        store.delete(state)
    else:
        data = store.get(state)
        store.put(state, bytes(b ^ 0xFF for b in data))  # same size, other bytes
    return f"{copied}/checkpoints", target


@pytest.mark.parametrize("damage", ["missing", "corrupted"])
def test_restore_from_damaged_state_fails_once_with_the_fix(completed: str, tmp_path: Path, damage: str) -> None:
    checkpoints, target = _damaged_copy(completed, tmp_path, damage)
    before = tree_digest(checkpoints)
    started = time.monotonic()
    # the job's own strategy restarts a failing attempt many times (fixed delay): none may be taken here
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--restore",
        target,
        "--checkpoint-dir",
        checkpoints,
        KEYED_SUM,
        f"out={tmp_path.as_uri()}/out",
        "count=600",
        "rate=600",
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "job FAILED:" in line]
    assert len(failed) == 1, result.stderr
    assert "cannot restore" in failed[0] and "--restore URI" in failed[0]
    assert ("is missing" if damage == "missing" else "does not match its sha256") in failed[0]
    assert "restarting in" not in result.stderr, "a damaged restore point must not be retried"
    assert time.monotonic() - started < 60
    after = tree_digest(checkpoints)
    assert {key: after.get(key) for key in before} == before, "the failed restore changed storage"


def test_checkpoint_ids_never_repeat_across_restarts(tmp_path: Path) -> None:
    """Checkpoints that expire at once write no directory; the next attempt still numbers after them."""
    root = tmp_path.as_uri()
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        f"{root}/checkpoints",
        "-D",
        "checkpoint.timeout_ms=1",
        "-D",
        "checkpoint.tolerable_failures=1",
        KEYED_SUM,
        f"out={root}/out",
        "count=100000",
        "rate=2000",
        "restarts=3",
        timeout=120,
    )
    failed = re.finditer(r"^\[streamjob\] checkpoint (\d+) failed:", result.stderr, re.MULTILINE)
    ids = [int(m.group(1)) for m in failed]
    assert result.stderr.count("restarting in") >= 2, result.stderr
    assert len(ids) >= 4, result.stderr
    assert ids == sorted(set(ids)), f"checkpoint ids repeated or went back: {ids}"
