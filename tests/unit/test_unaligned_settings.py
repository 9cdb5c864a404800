"""The seeds' AT_LEAST_ONCE + unaligned combination runs (with Flink's warning) and takes aligned checkpoints."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import CheckpointingMode, StreamExecutionEnvironment
from streamjob.worker.config import UNALIGNED_OFF_IN_AT_LEAST_ONCE
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


def test_at_least_once_with_unaligned_runs_with_a_warning(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(10, CheckpointingMode.AT_LEAST_ONCE)
    env.get_checkpoint_config().enable_unaligned_checkpoints()
    out: list[Any] = []
    records = [(f"k{i % 3}", i) for i in range(200)]
    env.from_source(TestingSource(records, batch_size=5)).key_by(lambda r: r[0]).sum(1).add_sink(TestingSink(out))
    with caplog.at_level(logging.WARNING):
        result = run_in_process(env, parallelism=2, storage=tmp_path)
    assert result.state.value == "FINISHED" and result.checkpoints >= 1
    assert UNALIGNED_OFF_IN_AT_LEAST_ONCE in caplog.text
    totals: dict[str, int] = {}
    for key, value in records:
        totals[key] = totals.get(key, 0) + value
    assert {k: max(v for kk, v in out if kk == k) for k in totals} == totals
    metadata = [json.loads(p.read_text()) for p in tmp_path.rglob("chk-*/_metadata")]
    assert metadata and all(m["unaligned"] is False for m in metadata)  # every checkpoint was aligned
