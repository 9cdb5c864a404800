"""Errors of the file connectors surface as clear job errors and failed checkpoints, never as loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.faultjobs.jobs import read_file_outputs
from tests.integration.faultjobs.runner import run_job

pytestmark = pytest.mark.integration


def test_unreachable_bucket_is_a_clear_job_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMJOB_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    code, progress = run_job(
        ["source=file", "input=s3://nowhere/in", f"output={(tmp_path / 'o').as_uri()}", "restart=none"],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
    )
    assert code != 0
    assert any("cannot reach the S3 endpoint http://127.0.0.1:9" in line for line in progress.lines), progress.lines


def test_a_commit_that_keeps_failing_fails_the_job_and_commits_nothing(tmp_path: Path) -> None:
    out = (tmp_path / "o").as_uri()
    code, progress = run_job(
        ["source=gen", "count=3000", "rate=3000", f"output={out}", "fail=commit", "restart=2", "interval=100"],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
    )
    assert code != 0
    assert progress.count("restarting") == 2, progress.lines
    assert any("job FAILED" in line and "injected commit failure" in line for line in progress.lines), progress.lines
    assert read_file_outputs(out) == []


def test_a_failing_pre_commit_declines_checkpoints_up_to_the_tolerable_number(tmp_path: Path) -> None:
    out = (tmp_path / "o").as_uri()
    code, progress = run_job(
        [
            "source=gen",
            "count=30000",
            "rate=3000",
            f"output={out}",
            "fail=pre_commit",
            "restart=none",
            "tolerable=2",
            "interval=100",
        ],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
    )
    assert code != 0
    failed = [line for line in progress.lines if "checkpoint" in line and "failed" in line]
    assert len(failed) >= 3 and "injected pre-commit failure" in failed[0], progress.lines
    assert any("job FAILED" in line and "tolerated" in line for line in progress.lines), progress.lines
    assert read_file_outputs(out) == []
