"""Bad input to ``streamjob run``: one clear line naming the problem, a non-zero exit, storage untouched."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import CliResult, run_cli
from tests.integration.jobs.support import KEYED_SUM, copy_tree, tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def problem_lines(result: CliResult) -> list[str]:
    """The lines that report the failure (``error: ...`` from the CLI, ``streamjob run: error: ...`` for a flag
    refused while parsing, below its usage, ``job FAILED: ...`` from local mode)."""
    return [
        line
        for line in result.stderr.splitlines()
        if line.startswith(("error:", "streamjob run: error:")) or "job FAILED:" in line
    ]


def assert_one_clear_error(result: CliResult, *fragments: str) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = problem_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr
    return lines[0]


def run(*args: str) -> CliResult:
    return run_cli("run", "--rest-port", "0", *args, timeout=120)


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The checkpoints root of a finished keyed-sum run (at least one completed checkpoint)."""
    root = tmp_path_factory.mktemp("completed").as_uri()
    result = run("--checkpoint-dir", f"{root}/checkpoints", KEYED_SUM, f"out={root}/out", "count=600", "rate=600")
    assert result.returncode == 0, result.stderr
    yield root


def latest_checkpoint(root: str) -> str:
    rows = [row for row in list_snapshots(f"{root}/checkpoints") if row.kind == "checkpoint"]
    assert rows
    return rows[0].location


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_missing_entrypoint(job_dir: Path) -> None:
    missing = job_dir / "nope.py"
    result = run(str(missing))
    line = assert_one_clear_error(result, f"entrypoint file {missing} does not exist")
    assert line.startswith("error:")
    assert result.returncode == 2


def test_entrypoint_that_raises_names_the_users_line(job_dir: Path) -> None:
    broken = job_dir / "broken.py"
    broken.write_text(
        textwrap.dedent("""\
        def build(args):
            settings = {}
            return settings["missing"]
    """)
    )
    line = assert_one_clear_error(run(str(broken)), "raised KeyError", f"{broken}:3 in build")
    assert line.startswith("error:")


def test_entrypoint_with_a_syntax_error(job_dir: Path) -> None:
    broken = job_dir / "syntax.py"
    broken.write_text("def build(args)\n    return None\n")
    line = assert_one_clear_error(run(str(broken)), "syntax error at line 1")
    assert line.startswith("error:")


def test_entrypoint_function_that_does_not_exist() -> None:
    line = assert_one_clear_error(run(f"{KEYED_SUM}:nothing_here"), "has no function 'nothing_here'")
    assert line.startswith("error:")


def test_bad_parallelism_flag_names_the_field(tmp_path: Path) -> None:
    line = assert_one_clear_error(run("-p", "0", KEYED_SUM, f"out={tmp_path.as_uri()}"), "parallelism", "got 0")
    assert "error:" in line


def test_bad_config_value_in_the_job_code_names_the_field(tmp_path: Path) -> None:
    result = run(KEYED_SUM, f"out={tmp_path.as_uri()}", "interval=5")
    line = assert_one_clear_error(result, "interval_ms=5 is invalid", "greater than or equal to 10")
    assert line.startswith("error:")


def test_an_empty_slot_sharing_group_is_one_error_line(tmp_path: Path) -> None:
    result = run(KEYED_SUM, f"out={tmp_path.as_uri()}", "group=")
    line = assert_one_clear_error(result, "slot_sharing_group takes a non-empty group name", "got ''")
    assert line.startswith("error:")


def test_unreachable_storage_endpoint_fails_fast_and_names_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMJOB_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    result = run("--checkpoint-dir", "s3://bucket/prefix", KEYED_SUM, f"out={tmp_path.as_uri()}")
    assert_one_clear_error(result, "cannot reach the S3 endpoint http://127.0.0.1:9", "STREAMJOB_S3_ENDPOINT")


def test_corrupted_metadata_is_refused_and_nothing_in_storage_changes(completed: str, tmp_path: Path) -> None:
    copied = (tmp_path / "copy").as_uri()
    copy_tree(f"{completed}/checkpoints", f"{copied}/checkpoints")
    checkpoints = f"{copied}/checkpoints"
    target = latest_checkpoint(copied)
    open_store(target).put("_metadata", b'{"format_version": 1, "kind": "checkpoint", broken')
    before = tree_digest(checkpoints)
    result = run("--restore", target, "--checkpoint-dir", checkpoints, KEYED_SUM, f"out={tmp_path.as_uri()}/out")
    assert_one_clear_error(result, f"{target}/_metadata is corrupted", "restore from an older checkpoint")
    after = tree_digest(checkpoints)
    assert {key: after.get(key) for key in before} == before


def test_uid_mismatch_on_restore_is_refused_unless_allowed(completed: str, tmp_path: Path) -> None:
    target = latest_checkpoint(completed)
    before = tree_digest(f"{completed}/checkpoints")
    args = (
        "--checkpoint-dir",
        (tmp_path / "new").as_uri(),
        "--restore",
        target,
        KEYED_SUM,
        f"out={completed}/out",
        "count=600",
        "sums_uid=renamed",
    )
    assert_one_clear_error(run(*args), "operator uid(s) ['sums']", "--allow-non-restored-state")
    allowed = run("--allow-non-restored-state", *args)
    assert allowed.returncode == 0, allowed.stderr
    assert "restored from checkpoint" in allowed.stderr
    after = tree_digest(f"{completed}/checkpoints")
    assert {key: after.get(key) for key in before} == before


def test_bad_flag_value_is_one_error_line(tmp_path: Path) -> None:
    result = run("--checkpoint-interval", "5", KEYED_SUM, f"out={tmp_path.as_uri()}")
    line = assert_one_clear_error(result, "interval")
    assert "error:" in line


@pytest.mark.parametrize("case", ["unreachable", "corrupted", "uid"])
def test_startup_failures_are_reported_as_error_lines_with_their_exit_code(
    case: str, completed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = f"out={tmp_path.as_uri()}/out"
    if case == "unreachable":
        monkeypatch.setenv("STREAMJOB_S3_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
        result, code = run("--checkpoint-dir", "s3://bucket/prefix", KEYED_SUM, out), 3
    elif case == "corrupted":
        copied = (tmp_path / "copy").as_uri()
        copy_tree(f"{completed}/checkpoints", f"{copied}/checkpoints")
        target = latest_checkpoint(copied)
        open_store(target).put("_metadata", b"{")
        result, code = run("--restore", target, "--checkpoint-dir", f"{copied}/checkpoints", KEYED_SUM, out), 3
    else:
        result, code = (
            run(
                "--restore",
                latest_checkpoint(completed),
                "--checkpoint-dir",
                (tmp_path / "n").as_uri(),
                KEYED_SUM,
                out,
                "sums_uid=renamed",
            ),
            4,
        )
    line = assert_one_clear_error(result)
    assert line.startswith("error:"), result.stderr
    assert result.returncode == code, result.stderr
