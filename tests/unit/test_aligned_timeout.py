"""The aligned-checkpoint timeout behaves as Flink's ``execution.checkpointing.aligned-checkpoint-timeout``.

- Without unaligned checkpoints the timeout has no effect (a warning at start says so): every
  checkpoint stays aligned, however long its alignment or its barriers' queueing lasts.
- With unaligned checkpoints and a timeout > 0 every checkpoint starts aligned (the coordinator's
  barriers are aligned) and a task switches it to unaligned once its alignment lasted the timeout.
- With unaligned checkpoints and timeout 0 (the default) barriers are unaligned from the start.
- Savepoints are always aligned; only unaligned checkpoints (hence timeout switches) need
  ``max_concurrent`` = 1.

The in-process runs at the end take the real runtime's checkpoints without backpressure: there an
aligned start completes aligned (no in-flight data), an unaligned start is unaligned.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.config import (
    ALIGNED_TIMEOUT_WITHOUT_UNALIGNED,
    UNALIGNED_NEEDS_ONE_CONCURRENT,
    CheckpointingMode,
    CheckpointSettings,
)
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process
from tests.unit.test_barrier_overtaking import Inputs, b
from tests.unit.test_barrier_overtaking import run as in_loop
from tests.unit.test_checkpoint_coordinator import Harness

pytestmark = pytest.mark.unit

EO, ALO = CheckpointingMode.EXACTLY_ONCE, CheckpointingMode.AT_LEAST_ONCE


# -- the decision: which checkpoints start unaligned, which timeout the tasks apply ----------------------


@pytest.mark.parametrize(
    ("unaligned", "mode", "timeout_ms", "from_start", "effective_ms"),
    [
        (False, EO, 0, False, 0),
        (False, EO, 200, False, 0),  # aligned only: the timeout has no effect
        (True, EO, 0, True, 0),  # unaligned from the start
        (True, EO, 200, False, 200),  # starts aligned, switches after 200 ms
        (True, ALO, 200, False, 0),  # unaligned is off in AT_LEAST_ONCE, and so is the timeout
        (False, ALO, 200, False, 0),
    ],
)
def test_which_checkpoints_start_unaligned_and_which_timeout_the_tasks_apply(
    unaligned: bool, mode: CheckpointingMode, timeout_ms: int, from_start: bool, effective_ms: int
) -> None:
    settings = CheckpointSettings(unaligned=unaligned, mode=mode, aligned_timeout_ms=timeout_ms)
    assert settings.unaligned_from_start is from_start
    assert settings.effective_aligned_timeout_ms == effective_ms


def test_a_timeout_without_unaligned_warns_that_it_has_no_effect_and_how_to_enable_them() -> None:
    settings = CheckpointSettings(aligned_timeout_ms=200)
    assert settings.warnings() == [ALIGNED_TIMEOUT_WITHOUT_UNALIGNED]
    assert "\n" not in ALIGNED_TIMEOUT_WITHOUT_UNALIGNED
    assert "no effect" in ALIGNED_TIMEOUT_WITHOUT_UNALIGNED
    assert "enable_unaligned_checkpoints(True)" in ALIGNED_TIMEOUT_WITHOUT_UNALIGNED
    assert "checkpoint.unaligned=true" in ALIGNED_TIMEOUT_WITHOUT_UNALIGNED
    assert CheckpointSettings(unaligned=True, aligned_timeout_ms=200).warnings() == []
    assert CheckpointSettings().warnings() == []


def test_only_unaligned_checkpoints_need_one_concurrent_checkpoint_a_timeout_alone_does_not() -> None:
    # Aligned only: the timeout never switches a checkpoint, so concurrent checkpoints are fine.
    assert CheckpointSettings(aligned_timeout_ms=200, max_concurrent=2).max_concurrent == 2
    # With unaligned, a checkpoint the timeout switches is unaligned: the same rule holds.
    with pytest.raises(ValidationError, match="max_concurrent = 1") as caught:
        CheckpointSettings(unaligned=True, aligned_timeout_ms=200, max_concurrent=2)
    assert UNALIGNED_NEEDS_ONE_CONCURRENT in str(caught.value)


@pytest.mark.parametrize(
    ("knobs", "unaligned"),
    [
        ({}, False),
        ({"aligned_timeout_ms": 200}, False),
        ({"unaligned": True}, True),
        ({"unaligned": True, "aligned_timeout_ms": 200}, False),  # starts aligned
    ],
    ids=["aligned", "aligned+timeout", "unaligned", "unaligned+timeout"],
)
def test_the_coordinator_sends_unaligned_barriers_only_when_unaligned_from_the_start(
    knobs: dict[str, Any], unaligned: bool
) -> None:
    harness = Harness(interval_ms=1000, **knobs)

    async def scenario() -> None:
        harness.coordinator.trigger()
        harness.coordinator.trigger(savepoint_dir="file:///tmp/sp")

    asyncio.run(scenario())
    checkpoint, savepoint = harness.gateway.barriers
    assert checkpoint.unaligned is unaligned
    assert savepoint.unaligned is False  # savepoints are always aligned


# -- the task's inputs (InputBarriers over a real InputGate, fake clock) --------------------------------


def test_aligned_only_a_timeout_never_switches_nor_lets_a_queued_barrier_overtake() -> None:
    def test() -> None:
        inputs = Inputs(2, aligned_timeout_ms=100)
        assert not inputs.barriers.times_out
        inputs.push(0, b(1), [9])
        inputs.push(1, [1], [2], b(1))  # behind two batches
        assert inputs.step() == b(1)  # channel 0 is blocked from here on
        inputs.clock.advance(10)
        inputs.barriers.check_timeouts()
        assert inputs.target.snapshots == []
        assert inputs.queue(1) == [[1], [2], b(1)]  # still queued behind the batches
        inputs.drain()
        ((barrier, alignment_s, capture),) = inputs.target.snapshots
        assert not barrier.unaligned and capture is None and alignment_s == pytest.approx(10)
        assert [batch for _, batch in inputs.processed] == [[1], [2], [9]]  # [9] waited for the alignment

    in_loop(test)


def test_unaligned_with_a_timeout_starts_aligned_and_switches_once_the_alignment_lasted_the_timeout() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True, aligned_timeout_ms=100)
        assert inputs.barriers.times_out
        inputs.push(0, b(1), [9])
        inputs.push(1, [1])
        assert inputs.step() == b(1)
        assert inputs.target.snapshots == []  # aligned: no snapshot at the first barrier
        assert inputs.step() == [1]
        assert inputs.step() is None  # channel 0 is blocked behind its barrier
        inputs.clock.advance(0.099)  # from the first barrier of the checkpoint at this task
        inputs.barriers.check_timeouts()
        assert inputs.target.snapshots == []
        inputs.clock.advance(0.001)
        inputs.barriers.check_timeouts()
        ((barrier, alignment_s, capture),) = inputs.target.snapshots
        assert barrier.unaligned and alignment_s == pytest.approx(0.1)  # forwarded as unaligned
        assert capture is not None and capture.waiting == {1} and capture.records == []  # [1] came before the switch
        inputs.push(1, [2], b(1))
        inputs.drain()
        # [9] came after channel 0's barrier: not in flight; [2] came before channel 1's: in flight.
        assert capture.complete and capture.records == [2]
        assert [batch for _, batch in inputs.processed][-2:] in ([[9], [2]], [[2], [9]])

    in_loop(test)


def test_unaligned_without_a_timeout_snapshots_at_the_first_barrier() -> None:
    def test() -> None:
        inputs = Inputs(2, unaligned=True)
        assert not inputs.barriers.times_out
        inputs.push(0, b(1, unaligned=True))
        inputs.push(1, [1], b(1, unaligned=True))
        inputs.step()
        ((barrier, alignment_s, capture),) = inputs.target.snapshots
        assert barrier.unaligned and alignment_s == 0 and capture is not None

    in_loop(test)


# -- the real runtime, in process, without backpressure -------------------------------------------------


def _run(tmp_path: Path, **knobs: Any) -> list[dict[str, Any]]:
    """A keyed sum over two subtasks with the given checkpoint knobs; the ``_metadata`` of its checkpoints."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(10)
    config = env.get_checkpoint_config()
    if knobs.get("unaligned"):
        config.enable_unaligned_checkpoints()
    if "timeout_ms" in knobs:
        config.set_aligned_checkpoint_timeout(knobs["timeout_ms"])
    out: list[Any] = []
    records = [(f"k{i % 3}", i) for i in range(300)]
    env.from_source(TestingSource(records, batch_size=5)).key_by(lambda r: r[0]).sum(1).add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=2, storage=tmp_path)
    assert result.state.value == "FINISHED" and result.checkpoints >= 1
    totals: dict[str, int] = {}
    for key, value in records:
        totals[key] = totals.get(key, 0) + value
    assert {k: max(v for kk, v in out if kk == k) for k in totals} == totals
    metadata = [json.loads(p.read_text()) for p in tmp_path.rglob("chk-*/_metadata")]
    assert metadata
    return metadata


def _in_flight(meta: dict[str, Any]) -> int:
    return sum(len(s["channel"]) for op in meta["operators"].values() for s in op["subtasks"])


def test_in_process_unaligned_with_a_long_timeout_takes_aligned_checkpoints(tmp_path: Path) -> None:
    metadata = _run(tmp_path, unaligned=True, timeout_ms=60_000)
    assert all(m["unaligned"] is False and _in_flight(m) == 0 for m in metadata)


def test_in_process_unaligned_without_a_timeout_takes_unaligned_checkpoints(tmp_path: Path) -> None:
    metadata = _run(tmp_path, unaligned=True)
    assert all(m["unaligned"] is True for m in metadata)


def test_in_process_aligned_with_a_timeout_warns_and_takes_aligned_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        metadata = _run(tmp_path, timeout_ms=1)
    assert ALIGNED_TIMEOUT_WITHOUT_UNALIGNED in caplog.text
    assert all(m["unaligned"] is False and _in_flight(m) == 0 for m in metadata)
