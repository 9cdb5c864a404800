"""``env.execute()`` hands the pipeline to an injected executor: the API never imports the runner above it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api import environment as environment_module
from streamjob.worker.api.environment import executor
from streamjob.worker.config import JobConfig
from streamjob.worker.errors import ConfigError, EntrypointError
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.loader import load_job

pytestmark = pytest.mark.unit


def _pipeline() -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_elements(1, 2).print()
    return env


def test_execute_hands_the_pipeline_and_its_arguments_to_the_injected_executor() -> None:
    calls: list[tuple[Any, str, str | None, dict[str, Any]]] = []

    def record(env: StreamExecutionEnvironment, *, job_name: str, restore: str | None, **options: Any) -> str:
        calls.append((env, job_name, restore, options))
        return "ran"

    env = _pipeline()
    token = executor().set(record)
    try:
        assert env.execute("sums", restore="file:///sp", rest_port=0) == "ran"
        assert env.execute_from_savepoint("file:///sp-2", "again") == "ran"
    finally:
        executor().reset(token)
    assert calls == [(env, "sums", "file:///sp", {"rest_port": 0}), (env, "again", "file:///sp-2", {})]
    assert env.job_name == "again"
    assert executor().get() is None


def test_without_an_injected_executor_the_local_runner_is_found_through_its_entry_point() -> None:
    from streamjob.worker.local import run_environment

    assert executor().get() is None
    assert environment_module._default_executor() is run_environment


def test_a_missing_entry_point_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment_module, "entry_points", lambda **_: [])
    with pytest.raises(EntrypointError, match=r"found no executor.*streamjob run job.py"):
        _pipeline().execute("orphan")


def test_the_loader_captures_execute_and_restores_the_executor_after(tmp_path: Path) -> None:
    job = tmp_path / "executor_capture_job.py"
    job.write_text(
        "from streamjob.worker.api import StreamExecutionEnvironment\n"
        "def build():\n"
        "    env = StreamExecutionEnvironment.get_execution_environment()\n"
        "    env.from_elements(1, 2).map(str).print()\n"
        "    env.execute('captured-job')\n"
        "    raise AssertionError('execute() returned under the loader')\n"
    )
    loaded = load_job(str(job))
    assert loaded.job_name == "captured-job"
    assert [t.kind.value for t in loaded.env.transformations] == ["source", "map", "sink"]
    assert executor().get() is None


def test_the_loader_restores_the_executor_when_the_entrypoint_fails(tmp_path: Path) -> None:
    job = tmp_path / "executor_failing_job.py"
    job.write_text("def build():\n    raise ValueError('boom')\n")
    sentinel_calls: list[str] = []

    def outer(env: StreamExecutionEnvironment, *, job_name: str, restore: str | None, **options: Any) -> None:
        sentinel_calls.append(job_name)

    token = executor().set(outer)
    try:
        with pytest.raises(EntrypointError, match="boom"):
            load_job(str(job))
        assert executor().get() is outer
    finally:
        executor().reset(token)


def test_execute_from_savepoint_before_the_pipeline_is_built_names_the_savepoint_for_execute() -> None:
    """The seed's order: ``executeFromSavepoint(path)``, then the pipeline, then ``execute(name)``."""
    calls: list[tuple[str, str | None]] = []

    def record(env: StreamExecutionEnvironment, *, job_name: str, restore: str | None, **options: Any) -> str:
        calls.append((job_name, restore))
        return "ran"

    env = StreamExecutionEnvironment.get_execution_environment()
    token = executor().set(record)
    try:
        assert env.execute_from_savepoint(" file:///sp-seed ") is None  # nothing to run yet
        env.from_elements(1, 2).print()
        assert env.execute("Job from Savepoint") == "ran"
        assert env.execute("again", restore="file:///explicit") == "ran"
    finally:
        executor().reset(token)
    assert calls == [("Job from Savepoint", "file:///sp-seed"), ("again", "file:///explicit")]


@pytest.mark.parametrize("path", ["", "   ", None, 3])
def test_execute_from_savepoint_refuses_a_path_that_is_not_a_uri_in_one_line(path: Any) -> None:
    with pytest.raises(ConfigError, match=r"^execute_from_savepoint: savepoint_path must be a snapshot URI"):
        _pipeline().execute_from_savepoint(path)


@pytest.mark.parametrize("ending", ["    env.execute('Job from Savepoint')\n", "    return env\n"])
def test_the_loader_carries_the_savepoint_the_code_names_and_the_config_wins_over_it(
    tmp_path: Path, ending: str
) -> None:
    job = tmp_path / f"savepoint_in_code_{len(ending)}.py"
    job.write_text(
        "from streamjob.worker.api import StreamExecutionEnvironment\n"
        "def build():\n"
        "    env = StreamExecutionEnvironment.get_execution_environment()\n"
        "    env.execute_from_savepoint('file:///snapshots/savepoint-7')\n"
        "    env.from_elements(1, 2).map(str).print()\n" + ending
    )
    loaded = load_job(str(job))
    assert loaded.restore_from == "file:///snapshots/savepoint-7"
    plain = JobConfig(name="j", entrypoint=str(job))
    assert resolve_plan(plain, loaded, default_checkpoints_uri="file:///c").restore_target == loaded.restore_from
    named = JobConfig(name="j", entrypoint=str(job), restore_from="latest")
    assert resolve_plan(named, loaded, default_checkpoints_uri="file:///c").restore_target == "latest"


def test_a_job_that_names_no_savepoint_restores_nothing(tmp_path: Path) -> None:
    job = tmp_path / "no_savepoint_job.py"
    job.write_text(
        "from streamjob.worker.api import StreamExecutionEnvironment\n"
        "def build():\n"
        "    env = StreamExecutionEnvironment.get_execution_environment()\n"
        "    env.from_elements(1, 2).print()\n"
        "    return env\n"
    )
    loaded = load_job(str(job))
    assert loaded.restore_from is None
    plan = resolve_plan(JobConfig(name="j", entrypoint=str(job)), loaded, default_checkpoints_uri="file:///c")
    assert plan.restore_target is None
