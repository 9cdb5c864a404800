"""The checker on crafted runs: exact ones pass; a duplicate, a loss, bad state, an unrequested empty start fail."""

from __future__ import annotations

import pytest

from tests.chaos.checker import CheckpointDone, Deployment, Observations, Row, check

pytestmark = pytest.mark.unit

COUNT, KEYS = 40, 3


def exact_rows(count: int = COUNT, keys: int = KEYS, order: list[int] | None = None) -> list[Row]:
    """What an exactly-once run commits (numbers processed in ``order``)."""
    n: dict[int, int] = {}
    s: dict[int, int] = {}
    rows = []
    for i in order if order is not None else range(count):
        k = i % keys
        n[k] = n.get(k, 0) + 1
        s[k] = s.get(k, 0) + i
        rows.append({"k": k, "i": i, "n": n[k], "s": s[k]})
    return rows


def obs(epochs: list[list[Row]], deployments: list[Deployment] | None = None, **extra: object) -> Observations:
    deps = deployments if deployments is not None else [Deployment(1, "a", None, 10.0)]
    fields: dict[object, object] = {"completed": [CheckpointDone("a", 1, 12.0)], "empty_lineages": frozenset({"a"})}
    fields.update(extra)
    return Observations(COUNT, KEYS, epochs, deps, **fields)  # type: ignore[arg-type]


def test_an_exact_run_passes_in_any_processing_order() -> None:
    order = list(range(COUNT))[::-1]
    verdict = check(obs([exact_rows(order=order)]))
    assert verdict.ok, verdict.problems
    assert (verdict.rows, verdict.lost, verdict.duplicated) == (COUNT, 0, 0)


def test_a_duplicate_fails() -> None:
    rows = exact_rows()
    verdict = check(obs([[*rows, rows[7]]]))
    assert not verdict.ok and verdict.duplicated == 1
    assert "commit a number again, e.g. [7]" in verdict.problems[0]


def test_a_replay_from_an_older_state_fails_as_duplicates() -> None:
    rows = exact_rows()
    replayed = exact_rows(order=list(range(20)))  # restored too old: 0..19 processed again from empty
    verdict = check(obs([rows[:20] + replayed + rows[20:]]))
    assert not verdict.ok and verdict.duplicated == 20


def test_a_lost_record_fails() -> None:
    rows = [r for r in exact_rows() if r["i"] != 13]
    verdict = check(obs([rows]))
    assert not verdict.ok and verdict.lost == 1
    assert any("never committed, e.g. [13]" in p for p in verdict.problems)
    assert verdict.wrong_state_keys == 1  # the key's counts skip one


def test_state_applied_twice_fails_even_without_duplicate_rows() -> None:
    rows = exact_rows()
    bad = [dict(r, n=r["n"] + 1, s=r["s"] + 1) if r["k"] == 1 and r["n"] >= 5 else r for r in rows]
    verdict = check(obs([bad]))
    assert not verdict.ok and verdict.wrong_state_keys == 1 and verdict.duplicated == 0


def test_a_lost_state_update_in_a_partial_epoch_counts_as_lost() -> None:
    first = [r for r in exact_rows(order=list(range(15))) if r["i"] != 4]
    verdict = check(obs([first, exact_rows()]))
    assert not verdict.ok and verdict.lost == 1 and verdict.wrong_state_keys == 1


def test_a_stateless_restart_starts_a_new_epoch_and_passes() -> None:
    deployments = [Deployment(1, "a", None, 10.0), Deployment(4, "b", None, 50.0)]
    verdict = check(
        obs([exact_rows(order=list(range(25))), exact_rows()], deployments, empty_lineages=frozenset({"a", "b"}))
    )
    assert verdict.ok, verdict.problems


def test_an_unrequested_empty_start_fails() -> None:
    deployments = [
        Deployment(1, "a", None, 10.0),
        Deployment(2, "a", "s3://x/a/chk-1/_metadata", 20.0),
        Deployment(3, "c", None, 30.0),
    ]  # e.g. restartNonce after Failed under a new jobId
    verdict = check(obs([exact_rows()], deployments))
    assert not verdict.ok and [d.attempt for d in verdict.unrequested_empty] == [3]
    assert "never started empty on purpose" in verdict.problems[0]


def test_an_empty_restart_after_a_checkpoint_of_the_lineage_fails() -> None:
    deployments = [Deployment(1, "a", None, 10.0), Deployment(2, "a", None, 20.0)]
    verdict = check(obs([exact_rows()], deployments))
    assert [d.attempt for d in verdict.unrequested_empty] == [2]
    assert "completed a checkpoint before" in verdict.problems[0]


def test_an_empty_restart_before_any_checkpoint_of_a_requested_empty_lineage_passes() -> None:
    deployments = [Deployment(1, "a", None, 10.0), Deployment(2, "a", None, 11.0)]
    assert check(obs([exact_rows()], deployments)).ok


def test_a_job_that_did_not_finish_fails() -> None:
    verdict = check(obs([exact_rows()], finished=False))
    assert not verdict.ok and verdict.problems == ["the job did not finish"]
