"""``env.execute()`` hands the pipeline to an injected executor: the API never imports the runner above it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api import environment as environment_module
from streamjob.worker.api.environment import executor
from streamjob.worker.errors import EntrypointError
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
