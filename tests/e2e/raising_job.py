"""A job the e2e tests' pods run (no tests here): its map function raises on one record, every attempt.

``build(argv)``: output URI, then the record that makes the map (uid ``parse``) raise
``ValueError: bad record <n>``; checkpoints every 200 ms, so each restart restores before the record
and meets it again (``tests/e2e/test_operator_root_cause.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENTRYPOINT = f"{Path(__file__).resolve()}:build"
BAD = 300


def _identity(i: int) -> int:
    return i


def _parse(i: int) -> int:
    if i == BAD:
        raise ValueError(f"bad record {i}")
    return i


def build(argv: list[str]) -> Any:
    """A throttled generator, the raising map, a file sink."""
    from streamjob.worker.api import StreamExecutionEnvironment
    from streamjob.worker.api.file_sink import FileSink

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(200)
    numbers = env.from_generator(_identity, count=100_000, records_per_second=300.0).uid("numbers")
    parsed = numbers.map(_parse).uid("parse")
    parsed.add_sink(FileSink(argv[0] if argv else "file:///tmp/streamjob-raising")).uid("out")
    return env
