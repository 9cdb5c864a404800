"""The broadcast-rules example (``examples/broadcast_rules.py``) on its own data, in process.

By hand: alice 120 at 1000 is judged by large-payment's first version (100): alert; bob 40 at 1500
is not; alice 60 at 4000 by its second version (50, from 3000): alert; bob 900 at 6000 exceeds
huge-payment (500, from 5000) and large-payment (50): two alerts. A crash after the second rule
change (the rules source aborts the attempt) changes nothing: the broadcast state comes back from
the checkpoint on both subtasks.
"""

from __future__ import annotations

from typing import Any

import pytest

from examples.broadcast_rules import PAYMENTS, RULE_CHANGES, Payment, Rule, alerts, with_event_time
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

EXPECTED = [
    "ALERT huge-payment: user bob paid 900.0 > 500.0 at 6000 (alert 1)",
    "ALERT large-payment: user alice paid 120.0 > 100.0 at 1000 (alert 1)",
    "ALERT large-payment: user alice paid 60.0 > 50.0 at 4000 (alert 2)",
    "ALERT large-payment: user bob paid 900.0 > 50.0 at 6000 (alert 2)",
]


@pytest.mark.parametrize("crash", [False, True])
def test_broadcast_rules_alerts_exactly(crash: bool) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(Payment).register_type(
        Rule
    )  # records cross between the slots: the codec allows only the job's classes
    changes: list[Any] = [*RULE_CHANGES[:2], TestingSource.ABORT, *RULE_CHANGES[2:]] if crash else RULE_CHANGES
    payments = env.from_source(TestingSource(PAYMENTS)).uid("payments")
    rules = env.from_source(TestingSource(changes)).uid("rules")
    out: list[Any] = []
    alerts(*with_event_time(payments, rules)).add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=2)
    assert result.restarts == (1 if crash else 0)
    assert sorted(out) == EXPECTED
