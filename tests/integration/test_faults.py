"""Fault injection: worker and JobMaster kills, kills during a checkpoint and between completion and
commit, S3 restarts mid-checkpoint — the committed output is still exact (see ``soak.py``).

A failure prints the seed; replay it with ``python -m tests.integration.soak --faults N --seed S --mode M``.
``STREAMJOB_FAULT_SEED`` fixes the first seed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.soak import SCENARIOS, FaultDriver, RoundResult, summarize
from tests.support.s3server import SeaweedServer

pytestmark = pytest.mark.integration


def _rounds(driver: FaultDriver, seed: int, mode: str, total: int, per_round: int) -> list[RoundResult]:
    results: list[RoundResult] = []
    n = 0
    while sum(len(r.faults) for r in results) < total and n < 4:
        result = driver.run_round(seed + n, per_round, mode)
        results.append(result)
        n += 1
        assert result.problem is None, (
            f"{result.problem}\nseed {result.seed}, faults {result.faults}; replay: python -m tests.integration.soak "
            f"--faults {per_round} --per-round {per_round} --seed {result.seed} --mode {mode}"
        )
    return results


def test_exact_output_under_injected_faults(s3_server: SeaweedServer, s3_prefix: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("STREAMJOB_FAULT_SEED", random.randrange(1, 10**6)))
    print(f"fault injection seed {seed}")
    driver = FaultDriver(s3_server, tmp_path)
    results = _rounds(driver, seed, "EXACTLY_ONCE", 14, 14)
    results += _rounds(driver, seed + 100, "AT_LEAST_ONCE", 6, 6)
    print(summarize(results))
    kinds = Counter(k.split("/")[0] for r in results for k in r.faults)
    assert sum(kinds.values()) >= 20, summarize(results)
    assert set(kinds) == set(SCENARIOS), summarize(results)
