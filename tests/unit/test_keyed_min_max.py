"""``min``/``max``/``min_by``/``max_by`` on a keyed stream, through the real reduce operator and keyed backend.

Expected outputs by hand: one output per record, the key's running result. ``min``/``max`` change only
the field (the other fields stay the key's first record's); ``min_by``/``max_by`` emit the whole
record holding the extreme, the first one on ties (the last one with ``first=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.errors import ConfigError
from streamjob.worker.runtime.context import TaskInfo
from streamjob.worker.runtime.operators import OperatorSetup, ReduceOperator

pytestmark = pytest.mark.unit

RECORDS = [("a", 3, "x"), ("a", 1, "y"), ("b", 5, "z"), ("a", 1, "w"), ("a", 4, "v"), ("b", 5, "u")]


def _run(tmp_path: Path, build: Any) -> list[Any]:
    env = StreamExecutionEnvironment()
    t = build(env.from_collection(RECORDS).key_by(lambda r: r[0])).transformation
    info = TaskInfo("j", "job", "reduce (1/1)", "reduce", 0, 1, 128, 0)
    op = ReduceOperator(OperatorSetup(info, t, (0, 127), "hashmap", False, tmp_path / str(id(t)), None))
    op.open()
    try:
        return op.process_batch(RECORDS[:2]) + op.process_batch(RECORDS[2:])
    finally:
        op.close()


def test_min_and_max_change_only_the_field(tmp_path: Path) -> None:
    assert _run(tmp_path, lambda k: k.min(1)) == [
        ("a", 3, "x"),
        ("a", 1, "x"),
        ("b", 5, "z"),
        ("a", 1, "x"),
        ("a", 1, "x"),
        ("b", 5, "z"),
    ]
    assert _run(tmp_path, lambda k: k.max(1)) == [
        ("a", 3, "x"),
        ("a", 3, "x"),
        ("b", 5, "z"),
        ("a", 3, "x"),
        ("a", 4, "x"),
        ("b", 5, "z"),
    ]


def test_min_by_and_max_by_emit_the_record_first_or_last_on_ties(tmp_path: Path) -> None:
    assert _run(tmp_path, lambda k: k.min_by(1)) == [
        ("a", 3, "x"),
        ("a", 1, "y"),
        ("b", 5, "z"),
        ("a", 1, "y"),
        ("a", 1, "y"),
        ("b", 5, "z"),
    ]
    assert _run(tmp_path, lambda k: k.min_by(1, first=False)) == [
        ("a", 3, "x"),
        ("a", 1, "y"),
        ("b", 5, "z"),
        ("a", 1, "w"),
        ("a", 1, "w"),
        ("b", 5, "u"),
    ]
    assert _run(tmp_path, lambda k: k.max_by(1)) == [
        ("a", 3, "x"),
        ("a", 3, "x"),
        ("b", 5, "z"),
        ("a", 3, "x"),
        ("a", 4, "v"),
        ("b", 5, "z"),
    ]


def test_a_bad_position_is_refused() -> None:
    env = StreamExecutionEnvironment()
    with pytest.raises(ConfigError, match="field position"):
        env.from_collection(RECORDS).key_by(lambda r: r[0]).min(1.5)  # type: ignore[arg-type]
