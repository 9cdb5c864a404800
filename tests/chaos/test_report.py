"""The campaign's report shows the figures of crafted runs, and a failing run's replay command and schedule."""

from __future__ import annotations

import pytest

from tests.chaos.campaign import Campaign, RunResult, markdown
from tests.chaos.checker import Deployment, Verdict
from tests.chaos.schedule import KINDS, make_schedule

pytestmark = pytest.mark.unit


def run(seed: int, verdict: Verdict, hits: list[str]) -> RunResult:
    steps = make_schedule(seed, len(hits), KINDS)
    results = [{"kind": s.kind, "hit": h} for s, h in zip(steps, hits, strict=True)]
    return RunResult(seed, steps, verdict, 60.0, "ns", [{"attempt": 1}], step_results=results)


def test_figures_and_failing_runs() -> None:
    bad = Verdict(rows=10, duplicated=3, unrequested_empty=[Deployment(5, "j", None, 1.0)])
    bad.problems.append("epoch 0: 3 rows commit a number again")
    c = Campaign(3, KINDS, runs=[run(1, Verdict(rows=30), ["ok", "missed x", "ok"]), run(2, bad, ["a", "b", "c"])])
    totals = c.totals()
    assert (totals["faults"], totals["injected"], totals["duplicated"], totals["unrequested_empty"]) == (6, 5, 3, 1)
    text = markdown(c)
    assert "| runs (failed) | 2 (1) |" in text and "| duplicated | 3 |" in text
    assert "| faults scheduled / injected | 6 / 5 |" in text
    assert "`python -m tests.chaos --seed 2 --faults 3`" in text and "seed 2: 3 faults" in text
    assert "epoch 0: 3 rows commit a number again" in text
    assert not c.ok


def test_replay_names_the_kinds_when_not_all() -> None:
    r = run(4, Verdict(), ["ok"])
    some = ("kill-worker", "savepoint-nonce")
    assert r.replay(some).endswith("--kinds kill-worker,savepoint-nonce")
    assert r.replay(KINDS) == "python -m tests.chaos --seed 4 --faults 1"
