"""A legacy source's records drained at a barrier belong to the checkpoint of every operator chained to it.

The source thread emits into a buffer under the checkpoint lock; the task drains the buffer in its
polls. At a barrier the task takes the source's snapshot under the lock together with the records
still buffered (they were emitted before it, so the source's position counts them) and must run
them through the chained operators *before* those operators snapshot: otherwise a chained
two-phase-commit sink writes them into the next transaction, and a crash before the next
checkpoint completes loses them (the restored source does not emit them again).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from streamjob.worker.api import (
    CheckpointedFunction,
    ListStateDescriptor,
    RichSourceFunction,
    StreamExecutionEnvironment,
)
from streamjob.worker.testing import TestingSink, run_in_process

pytestmark = pytest.mark.unit

N = 200_000
_CRASHED = threading.Event()
_CRASH_AT = [0]


class PacedSource(RichSourceFunction, CheckpointedFunction):
    """Emits 0..N-1 under the checkpoint lock, 20 at a time, faster than the chain consumes them."""

    def __init__(self) -> None:
        self.running = True
        self.next = 0

    def initialize_state(self, context: Any) -> None:
        self.state = context.get_operator_state_store().get_list_state(ListStateDescriptor("position"))
        restored = list(self.state.get())
        self.next = restored[0] if restored else 0

    def snapshot_state(self, context: Any) -> None:
        self.state.update([self.next])

    def run(self, ctx: Any) -> None:
        while self.running and self.next < N:
            with ctx.get_checkpoint_lock():
                ctx.collect(self.next)
                self.next += 1

    def cancel(self) -> None:
        self.running = False


def slow_identity(value: int) -> int:
    """Slower than the source (records pile up in its buffer between polls); crashes once at the chosen record."""
    if value == _CRASH_AT[0] and not _CRASHED.is_set():
        _CRASHED.set()
        raise RuntimeError("crash between two checkpoints")
    return value


@pytest.mark.parametrize("crash_at", [60_000, 120_000, 170_000])
def test_records_drained_at_a_barrier_reach_the_chained_sink_before_its_snapshot(crash_at: int) -> None:
    _CRASHED.clear()
    _CRASH_AT[0] = crash_at
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    source = env.add_source(PacedSource()).uid("source")
    source.map(slow_identity).uid("slow").add_sink(TestingSink(out)).uid("sink")
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # the source thread runs between the task's steps: its buffer is rarely empty
    try:
        result = run_in_process(env, parallelism=1)
    finally:
        sys.setswitchinterval(switch)
    assert result.restarts == 1
    assert result.checkpoints >= 2
    lost = sorted(set(range(N)) - set(out))
    assert sorted(out) == list(range(N)), f"lost {len(lost)} ({lost[:5]}...), duplicated {len(out) - len(set(out))}"
