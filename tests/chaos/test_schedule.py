"""The schedule is a pure function of (seed, faults, kinds): deterministic, covering, valid."""

from __future__ import annotations

import pytest

from tests.chaos.schedule import (
    DEPENDS_ON,
    INDEPENDENT,
    KINDS,
    MAX_PARALLELISM,
    MIN_PARALLELISM,
    START_PARALLELISM,
    format_schedule,
    kind_counts,
    make_schedule,
)

pytestmark = pytest.mark.unit


def test_same_seed_same_schedule_and_other_seeds_differ() -> None:
    assert make_schedule(7, 30) == make_schedule(7, 30)
    assert format_schedule(7, make_schedule(7, 30)) == format_schedule(7, make_schedule(7, 30))
    others = {tuple(s.describe() for s in make_schedule(seed, 30)) for seed in range(20)}
    assert len(others) == 20


@pytest.mark.parametrize("seed", range(25))
def test_every_kind_at_least_once_when_faults_allow(seed: int) -> None:
    steps = make_schedule(seed, len(KINDS) + seed)
    assert len(steps) == len(KINDS) + seed
    assert set(kind_counts(steps)) == set(KINDS)
    assert [s.index for s in steps] == list(range(len(steps)))


def test_fewer_faults_than_kinds_are_distinct_kinds_from_the_given_ones() -> None:
    kinds = ("kill-worker", "rescale", "s3-outage", "suspend-resume")
    steps = make_schedule(3, 3, kinds)
    assert len(steps) == 3 and len({s.kind for s in steps}) == 3 and {s.kind for s in steps} <= set(kinds)
    assert make_schedule(3, 0) == []


@pytest.mark.parametrize("seed", range(25))
def test_rescales_always_change_the_parallelism_within_bounds(seed: int) -> None:
    parallelism = START_PARALLELISM
    for step in make_schedule(seed, 60):
        if step.kind == "rescale":
            target = step.params["parallelism"]
            assert target != parallelism and MIN_PARALLELISM <= target <= MAX_PARALLELISM
            assert step.params["mode"] in ("savepoint", "last-state")
            parallelism = target
        if step.kind in ("suspend-resume", "kill-operator-upgrade"):
            assert step.params["mode"] in ("savepoint", "last-state")  # only the stateless step asks for empty state
        assert 0.2 <= step.delay_s <= 4.0


def test_independent_kinds_exclude_those_waiting_for_other_fixes() -> None:
    assert set(INDEPENDENT) | set(DEPENDS_ON) == set(KINDS)
    assert not set(INDEPENDENT) & set(DEPENDS_ON)
    assert {s.kind for s in make_schedule(11, 40, INDEPENDENT)} == set(INDEPENDENT)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown fault kind.*nope.*valid kinds: kill-worker"):
        make_schedule(1, 3, ["kill-worker", "nope"])
    with pytest.raises(ValueError, match="faults must be >= 0"):
        make_schedule(1, -1)
    with pytest.raises(ValueError, match="no fault kinds"):
        make_schedule(1, 3, [])
