"""The enrichment example (``examples/enrichment.py``) in process against its real HTTP service:
a crash with lookups in flight loses no order and enriches none twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from examples.enrichment import UNKNOWN, ProfileService, enrich, enriched_line, order, profile_of
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    service = ProfileService()
    yield service.start()
    service.stop()


def test_orders_are_enriched_exactly_once_across_a_crash(service_url: str) -> None:
    orders = [order(i) for i in range(300)]
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(20)
    source = TestingSource([*orders[:170], TestingSource.ABORT, *orders[170:]], batch_size=10)
    enrich(env.from_source(source), service_url).add_sink(TestingSink(out))
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 1
    expected = [enriched_line(i, u, a, profile_of(u) or UNKNOWN) for i, u, a in orders]
    assert sorted(out) == sorted(expected)
    assert any("tier none" in line for line in out)  # the service's 404s became the UNKNOWN profile
