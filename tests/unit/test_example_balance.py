"""The balance example (``examples/balance.py``) under the in-process test kit: a crash between two
transactions of a user loses no balance update and applies none twice."""

from __future__ import annotations

from typing import Any

import pytest

from examples.balance import Transaction, balances
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


def test_balances_are_exact_across_a_crash() -> None:
    txs = [Transaction(f"user{i % 3}", float(i), i) for i in range(1, 13)]
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(Transaction)  # records cross between the slots: the codec allows only the job's classes
    balances(env.from_source(TestingSource([*txs[:7], TestingSource.ABORT, *txs[7:]]))).add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 1
    totals: dict[str, float] = {}
    expected = []
    for tx in txs:
        totals[tx.user_id] = totals.get(tx.user_id, 0.0) + tx.amount
        expected.append(f"User {tx.user_id} balance: {totals[tx.user_id]}")
    assert sorted(out) == sorted(expected)
