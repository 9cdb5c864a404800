"""The user-activity example (``examples/user_activity.py``, the seeds' StatePersistenceExample) under the
in-process test kit: per user, login and purchase counts are exact across a crash, on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from examples.user_activity import UserEvent, configure_state_backend, track_activity
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.errors import ConfigError
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


def _expected(events: list[UserEvent]) -> list[str]:
    counts: dict[tuple[str, str], int] = {}
    lines = []
    for e in events:
        if e.event_type in ("login", "purchase"):
            counts[(e.user_id, e.event_type)] = counts.get((e.user_id, e.event_type), 0) + 1
            lines.append(f"User {e.user_id} {e.event_type} count: {counts[(e.user_id, e.event_type)]}")
        else:
            lines.append(f"User {e.user_id} performed {e.event_type}")
    return lines


@pytest.mark.parametrize("backend", ["HashMap", "RocksDB"])
def test_counts_are_exact_across_a_crash(backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = ["login", "purchase", "login", "logout"]
    events = [UserEvent(f"user{i % 3}", kinds[i % 4], 1_000 * i) for i in range(16)]
    monkeypatch.setenv("USER_ACTIVITY_CHECKPOINTS", (tmp_path / "checkpoints").as_uri())
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(UserEvent)
    configure_state_backend(env, backend)  # the seed lower-cases the name
    assert env.state_backend.kind == backend.lower()
    track_activity(env.from_source(TestingSource([*events[:9], TestingSource.ABORT, *events[9:]]))).add_sink(
        TestingSink(out)
    )
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 1
    assert sorted(out) == sorted(_expected(events))


def test_an_unknown_backend_is_refused_as_in_the_seed() -> None:
    with pytest.raises(ValueError, match="Unknown backend type: memory"):
        configure_state_backend(StreamExecutionEnvironment.get_execution_environment(), "memory")


def test_the_seeds_hdfs_storage_is_refused_with_the_substitutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_ACTIVITY_CHECKPOINTS", "hdfs://namenode:8020/flink/checkpoints")
    with pytest.raises(ConfigError, match="HDFS is not a checkpoint store"):
        configure_state_backend(StreamExecutionEnvironment.get_execution_environment(), "rocksdb")
