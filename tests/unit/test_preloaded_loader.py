"""A forked slot's job, loaded while the slot waits for its address (``slot_process.preloaded_loader``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.errors import EntrypointError
from streamjob.worker.slot_process import preloaded_loader

pytestmark = pytest.mark.unit

JOB = """
from streamjob.worker.api import StreamExecutionEnvironment

LOADS = []


def build(args):
    LOADS.append(list(args))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection([1, 2, 3]).print()
    return env
"""


def _job(tmp_path: Path, text: str = JOB) -> str:
    path = tmp_path / "job.py"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_first_deployment_gets_the_preloaded_job_and_later_ones_a_fresh_one(tmp_path: Path) -> None:
    entry = _job(tmp_path)
    loader = preloaded_loader((entry, ["a"]))
    first = loader(entry, ["a"])
    again = loader(entry, ["a"])  # a restart in place: never the function objects of the attempt before
    assert first is not again
    assert first.env.transformations and again.env.transformations
    assert first.env.transformations[0] is not again.env.transformations[0]


def test_another_job_or_other_arguments_are_loaded_as_asked(tmp_path: Path) -> None:
    entry = _job(tmp_path)
    loader = preloaded_loader((entry, ["a"]))
    loaded = loader(entry, ["b"])
    assert loaded.env.transformations  # loaded with the deployed arguments, not the preloaded ones
    assert loader(entry, ["a"]) is not None  # the preloaded one was dropped with the mismatch: loads afresh


def test_a_job_that_fails_to_preload_fails_at_its_deployment_with_the_reason(tmp_path: Path) -> None:
    entry = _job(tmp_path, "raise RuntimeError('boom at import')\n")
    loader = preloaded_loader((entry, []))  # no exception here: the slot still registers
    with pytest.raises(EntrypointError, match="boom at import"):
        loader(entry, [])


def test_a_missing_job_file_fails_at_its_deployment(tmp_path: Path) -> None:
    loader = preloaded_loader((str(tmp_path / "nope.py"), []))
    with pytest.raises(EntrypointError):
        loader(str(tmp_path / "nope.py"), [])
