"""The chaos run's verdict (pure): committed output and deployments → lost, duplicated, wrong state, empty starts.

Inputs are what ``observe`` collected after the run: the committed output rows of each *epoch* (an
output directory; a stateless upgrade — the one requested empty state — starts the next one), the
deployments (each JobMaster's ``event running`` line: attempt, lineage, restore point, when) and
the checkpoints each lineage completed (the JobMasters' ``completed checkpoint`` lines).

- **Duplicated**: rows of one epoch that repeat a number already committed in it.
- **Lost**: in the final epoch, numbers of ``0..count-1`` never committed; in any epoch, a key whose
  counts skip a value (a state update whose row was never committed while a later one was).
- **Wrong state**: per key the rows ordered by count must read 1, 2, … with each sum the previous
  one plus the number (the keyed state restored is the state that produced the committed rows); in
  the final epoch the last count and sum must be the key's totals.
- **Unrequested empty state**: a deployment that restored nothing although its lineage was not
  started empty on purpose (first deployment, stateless upgrade), or although its lineage had
  already completed a checkpoint when it started.
Used by ``campaign``; unit-tested with crafted inputs in ``test_checker.py``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, int]


@dataclass(frozen=True)
class Deployment:
    """One attempt whose tasks ran: the JobMaster's ``event running``."""

    attempt: int
    job_id: str
    restored_from: str | None
    started_at: float
    pod: str = ""


@dataclass(frozen=True)
class CheckpointDone:
    """A checkpoint (or savepoint) a JobMaster completed."""

    job_id: str
    id: int
    at: float


@dataclass(frozen=True)
class Observations:
    """Everything the checker judges; ``epochs[-1]`` is the final epoch (it must hold all numbers)."""

    count: int
    keys: int
    epochs: list[list[Row]]
    deployments: list[Deployment]
    completed: list[CheckpointDone]
    empty_lineages: frozenset[str]
    finished: bool = True


@dataclass
class Verdict:
    """What is wrong (nothing when ``ok``)."""

    rows: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_state_keys: int = 0
    unrequested_empty: list[Deployment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No loss, no duplicate, exact state, no unrequested empty start, and the job finished."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """For the campaign's result file."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "wrong_state_keys": self.wrong_state_keys,
            "unrequested_empty": [d.__dict__ for d in self.unrequested_empty],
            "problems": self.problems,
        }


def check(obs: Observations) -> Verdict:
    """Judges one run."""
    v = Verdict()
    if not obs.finished:
        v.problems.append("the job did not finish")
    if not obs.epochs:
        v.problems.append("no output epoch observed")
    for number, rows in enumerate(obs.epochs):
        final = number == len(obs.epochs) - 1
        _check_epoch(v, obs, number, rows, final)
    _check_deployments(v, obs)
    return v


def _check_epoch(v: Verdict, obs: Observations, number: int, rows: list[Row], final: bool) -> None:
    v.rows += len(rows)
    seen: dict[int, int] = defaultdict(int)
    for row in rows:
        seen[row["i"]] += 1
    duplicated = sum(n - 1 for n in seen.values())
    if duplicated:
        first = sorted(i for i, n in seen.items() if n > 1)[:5]
        v.duplicated += duplicated
        v.problems.append(f"epoch {number}: {duplicated} rows commit a number again, e.g. {first}")
    strays = sorted(i for i in seen if not 0 <= i < obs.count)
    if strays:
        v.problems.append(f"epoch {number}: numbers outside 0..{obs.count - 1} committed, e.g. {strays[:5]}")
    if final:
        missing = [i for i in range(obs.count) if i not in seen]
        if missing:
            v.lost += len(missing)
            v.problems.append(
                f"epoch {number} (final): {len(missing)} of {obs.count} numbers never committed, e.g. {missing[:5]}"
            )
    by_key: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_key[row["k"]].append(row)
    wrong: list[str] = []
    for key in sorted(set(by_key) | (set(range(min(obs.keys, obs.count))) if final else set())):
        problem, gaps = _check_key(obs, key, by_key.get(key, []), final)
        if problem:
            wrong.append(f"key {key}: {problem}")
            if not final:
                v.lost += gaps
    if wrong:
        v.wrong_state_keys += len(wrong)
        v.problems.append(f"epoch {number}: keyed state wrong for {len(wrong)} keys, e.g. {wrong[0]}")


def _check_key(obs: Observations, key: int, rows: list[Row], final: bool) -> tuple[str | None, int]:
    """What is wrong with one key's rows (None if nothing), and how many counts are missing."""
    unique = {row["i"]: row for row in rows}.values()  # duplicates are counted elsewhere
    ordered = sorted(unique, key=lambda r: (r["n"], r["i"]))
    total = 0
    for expected_n, row in enumerate(ordered, start=1):
        if row["i"] % obs.keys != key or row["k"] != key:
            return f"number {row['i']} under key {row['k']}", 0
        if row["n"] != expected_n:
            gaps = row["n"] - expected_n
            return f"count {row['n']} where {expected_n} was due (number {row['i']})", max(gaps, 0)
        total += row["i"]
        if row["s"] != total:
            return f"sum {row['s']} at count {row['n']} where {total} was due (number {row['i']})", 0
    if final:
        numbers = range(key, obs.count, obs.keys)
        if len(ordered) != len(numbers) or total != sum(numbers):
            return f"final count {len(ordered)} / sum {total}, expected {len(numbers)} / {sum(numbers)}", 0
    return None, 0


def _check_deployments(v: Verdict, obs: Observations) -> None:
    first_checkpoint: dict[str, float] = {}
    for c in obs.completed:
        first_checkpoint[c.job_id] = min(c.at, first_checkpoint.get(c.job_id, c.at))
    for d in sorted(obs.deployments, key=lambda d: (d.started_at, d.attempt)):
        if d.restored_from is not None:
            continue
        if d.job_id not in obs.empty_lineages:
            why = "its lineage was never started empty on purpose"
        elif d.job_id in first_checkpoint and first_checkpoint[d.job_id] < d.started_at:
            why = "its lineage had completed a checkpoint before"
        else:
            continue
        v.unrequested_empty.append(d)
        v.problems.append(f"attempt {d.attempt} (job {d.job_id}) started with an empty state: {why}")
