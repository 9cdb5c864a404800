"""Entrypoints that build no pipeline: the error says what is missing and how to write it."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.errors import EntrypointError
from streamjob.worker.loader import load_job

pytestmark = pytest.mark.unit


def test_a_file_without_a_build_function_is_told_how_to_write_one(tmp_path: Path) -> None:
    job = tmp_path / "loader_no_build.py"
    job.write_text("x = 1\n")
    with pytest.raises(EntrypointError) as caught:
        load_job(str(job))
    message = str(caught.value)
    assert "has no build() function and no env.execute() call" in message
    assert "def build(args):" in message and f"{job}:FUNCTION" in message


def test_a_build_function_that_returns_nothing_is_named(tmp_path: Path) -> None:
    job = tmp_path / "loader_returns_nothing.py"
    job.write_text("def build():\n    return None\n")
    with pytest.raises(
        EntrypointError,
        match=r"build\(\) did not build a pipeline; it must return the "
        r"StreamExecutionEnvironment or call env.execute",
    ):
        load_job(str(job))
