"""Failures a restart cannot mend end the job at once, with the fix, instead of restarting forever.

The keyed-sum job restarts under a fixed-delay strategy with 2^31 - 1 attempts (Flink's default
with checkpointing on), so any of these used to look like a hang: an operator-state or keyed-state
file that passes its checksum but does not decode (it was a ``RestoreError`` and restarted), and a
job module that raises at import in the worker slots only.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import CliResult, run_cli
from tests.integration.jobs.support import KEYED_SUM, copy_tree, finished_keyed_sum_run, job_path, tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The checkpoints root of a finished keyed-sum run."""
    return finished_keyed_sum_run(tmp_path_factory.mktemp("completed").as_uri())


def _undecodable_copy(completed: str, tmp_path: Path, suffix: str) -> tuple[str, str, str]:
    """A copy whose newest checkpoint has a ``suffix`` state file replaced by bytes that do not decode.

    The handle in ``_metadata`` is updated to the new size and sha256, so the file passes its checks
    and only decoding finds the damage. Returns (checkpoints root, checkpoint directory, file path).
    """
    checkpoints = (tmp_path / "copy").as_uri() + "/checkpoints"
    copy_tree(f"{completed}/checkpoints", checkpoints)
    target = max((r for r in list_snapshots(checkpoints) if r.kind == "checkpoint"), key=lambda r: r.id or 0)
    chk = open_store(target.location)
    job_root = open_store(target.location.rsplit("/", 1)[0])
    meta = json.loads(chk.get("_metadata"))
    garbage = b"\xc1 this is not msgpack \xc1" * 8
    changed = ""
    for op in meta["operators"].values():
        for subtask in op["subtasks"]:
            for handle in subtask["keyed"] + subtask["operator"]:
                if handle["path"].endswith(suffix) and not changed:
                    job_root.put(handle["path"], garbage)
                    handle["size"], handle["sha256"] = len(garbage), hashlib.sha256(garbage).hexdigest()
                    changed = handle["path"]
    assert changed, f"no {suffix} file in {target.location}"
    chk.put("_metadata", json.dumps(meta).encode())
    return checkpoints, target.location, changed


def _failed_once(result: CliResult, started: float) -> str:
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "job FAILED:" in line]
    assert len(failed) == 1, result.stderr
    assert "restarting in" not in result.stderr, "a failure no restart can mend must not be retried"
    assert time.monotonic() - started < 90
    return failed[0]


@pytest.mark.parametrize("suffix", [".opstate", ".keyed"])
def test_a_state_file_that_does_not_decode_fails_at_once_with_exit_3(
    completed: str, tmp_path: Path, suffix: str
) -> None:
    checkpoints, target, path = _undecodable_copy(completed, tmp_path, suffix)
    before = tree_digest(checkpoints)
    started = time.monotonic()
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
    line = _failed_once(result, started)
    assert "cannot restore" in line and "is corrupted" in line and path in line, line
    assert "--restore URI" in line
    after = tree_digest(checkpoints)
    assert {key: after.get(key) for key in before} == before, "the failed restore changed storage"


def test_a_job_that_fails_to_load_in_the_slots_fails_at_once_with_its_message(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        (tmp_path / "chk").as_uri(),
        job_path("slot_only_import_error.py"),
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    line = _failed_once(result, started)
    assert "cannot load the job" in line, line
    assert "only_on_the_jobmaster" in line, "the job's own error is in the message"
