"""Exactly-once under crashes at random points, through the in-process test kit (seeded by hypothesis).

Every example places ABORT markers at random positions of a keyed job's input, at a random parallelism
and batch size, with checkpoints every 10 ms, so crashes fall before, between and during checkpoints;
the committed output must be exactly the running sums of the input. In the integration tier for its
run time (no server needed).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamjob.worker.api.environment import StreamExecutionEnvironment
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.integration

RECORDS = [(f"k{i % 7}", i) for i in range(1, 301)]


def expected_sums(records: list[tuple[str, int]]) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    out = []
    for key, value in records:
        totals[key] += value
        out.append((key, totals[key]))
    return sorted(out)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    aborts=st.lists(st.integers(0, len(RECORDS)), min_size=1, max_size=3),
    parallelism=st.integers(1, 3),
    batch_size=st.sampled_from([1, 7, 64]),
)
def test_random_crashes_never_lose_or_repeat_output(aborts: list[int], parallelism: int, batch_size: int) -> None:
    items: list[Any] = list(RECORDS)
    for position in sorted(aborts, reverse=True):
        items.insert(position, TestingSource.ABORT)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(10)
    out: list[Any] = []
    env.from_source(TestingSource(items, batch_size=batch_size)).key_by(lambda r: r[0]).reduce(
        lambda a, b: (a[0], a[1] + b[1])
    ).uid("sums").add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=parallelism, max_restarts=len(aborts))
    assert result.restarts == len(aborts)
    assert sorted(tuple(r) for r in out) == expected_sums(RECORDS)
