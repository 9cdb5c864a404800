"""Seeded fault schedules (pure): ``make_schedule(seed, faults, kinds)`` → the steps of one chaos run.

The same (seed, faults, kinds) always gives the same steps, so a failing run replays with
``python -m tests.chaos --seed N --faults K [--kinds ...]`` (or ``make chaos SEED=N FAULTS=K``).
With at least as many faults as kinds, every kind appears at least once. Each step says what to
inject and its parameters; ``executor`` applies it to the test bed, ``checker`` judges the result.
Used by ``campaign`` and the unit tests (``test_schedule.py``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Every fault kind, in report order.
KINDS: tuple[str, ...] = (
    "kill-worker",  # SIGKILL of a worker pod's processes
    "kill-jobmaster",  # SIGKILL of the JobMaster pod's processes
    "kill-operator",  # SIGKILL of the operator, restarted after down_s; while_down: a pod killed meanwhile
    "kill-operator-upgrade",  # an upgrade, the operator killed when its operation reaches step `at`
    "kill-operator-savepoint",  # savepointTriggerNonce, the operator killed while the savepoint is requested
    "stop-worker",  # SIGSTOP of a worker for longer than the checkpoint timeout, then SIGCONT
    "s3-outage",  # the S3 server stopped for down_s, then started again (same data)
    "s3-freeze",  # the S3 server SIGSTOPped for down_s (connections hang), then SIGCONT
    "upgrade-savepoint",  # a spec change (args) with upgradeMode savepoint
    "upgrade-last-state",  # the same with upgradeMode last-state
    "upgrade-stateless",  # upgradeMode stateless: the one step that requests an empty state
    "savepoint-nonce",  # savepointTriggerNonce; then_kill: a worker killed right after the savepoint
    "checkpoint-nonce",  # checkpointTriggerNonce; then_kill likewise
    "suspend-resume",  # state: suspended (savepoint or last-state), then running again
    "fail-restart",  # maxRestarts 0 + a worker kill → Failed, then restartNonce
    "rescale",  # parallelism change with upgradeMode savepoint or last-state
)

#: Kinds whose runs fail until a fix lands elsewhere, with that fix: the CI seeds leave them out.
#: Empty since the Flink 1.15 savepoint semantics landed (an intermediate savepoint commits nothing;
#: ``savepoint-nonce`` and ``kill-operator-savepoint`` found the duplicates it fixed).
DEPENDS_ON: dict[str, str] = {}

#: The kinds that pass on this branch alone.
INDEPENDENT: tuple[str, ...] = tuple(k for k in KINDS if k not in DEPENDS_ON)

MIN_PARALLELISM, MAX_PARALLELISM = 1, 3
START_PARALLELISM = 2
KEPT_STATE_MODES = ("savepoint", "last-state")
#: Operation steps an operator kill aims at (``deploy`` passes within one round: never seen in status).
OPERATOR_STEPS = {"savepoint": ("snapshot", "teardown", "verify"), "last-state": ("teardown", "verify")}
STEP_ORDER = ("snapshot", "teardown", "wait", "deploy", "verify")


@dataclass(frozen=True)
class Step:
    """One fault: applied ``delay_s`` after the job is running and its input gate was raised."""

    index: int
    kind: str
    delay_s: float
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``#3 rescale parallelism=3 mode=savepoint (after 1.2s)``."""
        args = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"#{self.index} {self.kind}{' ' + args if args else ''} (after {self.delay_s:.1f}s)"


def check_kinds(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The kinds, deduplicated in order; a ValueError names an unknown kind and the valid ones."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; valid kinds: {', '.join(KINDS)}")
    if not kinds:
        raise ValueError("no fault kinds given")
    return tuple(dict.fromkeys(kinds))


def make_schedule(seed: int, faults: int, kinds: tuple[str, ...] | list[str] = KINDS) -> list[Step]:
    """``faults`` steps drawn from ``kinds`` by ``seed``; each kind at least once when faults >= len(kinds)."""
    chosen = check_kinds(kinds)
    if faults < 0:
        raise ValueError(f"faults must be >= 0, got {faults}")
    rng = random.Random(seed)
    if faults >= len(chosen):
        order = list(chosen) + [rng.choice(chosen) for _ in range(faults - len(chosen))]
    else:
        order = rng.sample(list(chosen), faults)
    rng.shuffle(order)
    parallelism = START_PARALLELISM
    steps = []
    for index, kind in enumerate(order):
        params, parallelism = _params(rng, kind, parallelism)
        steps.append(Step(index, kind, round(rng.uniform(0.2, 4.0), 1), params))
    return steps


def _params(rng: random.Random, kind: str, parallelism: int) -> tuple[dict[str, Any], int]:
    """A kind's parameters; the parallelism the job has after the step."""
    down = round(rng.uniform(1.0, 6.0), 1)
    if kind == "kill-worker":
        return {"worker": rng.randrange(MAX_PARALLELISM)}, parallelism
    if kind == "fail-restart":
        return {"worker": rng.randrange(MAX_PARALLELISM), "pause_s": down}, parallelism
    if kind == "kill-operator":
        return {
            "down_s": down,
            "while_down": rng.choice(("nothing", "kill-worker", "kill-jobmaster")),
            "worker": rng.randrange(MAX_PARALLELISM),
        }, parallelism
    if kind == "kill-operator-upgrade":
        mode = rng.choice(KEPT_STATE_MODES)
        return {"mode": mode, "at": rng.choice(OPERATOR_STEPS[mode]), "down_s": down}, parallelism
    if kind == "kill-operator-savepoint":
        return {"down_s": down}, parallelism
    if kind == "stop-worker":
        return {"worker": rng.randrange(MAX_PARALLELISM), "stop_s": round(rng.uniform(9.0, 14.0), 1)}, parallelism
    if kind in ("s3-outage", "s3-freeze"):
        return {"down_s": round(rng.uniform(3.0, 15.0), 1)}, parallelism
    if kind in ("savepoint-nonce", "checkpoint-nonce"):
        return {"then_kill": rng.random() < 0.5, "worker": rng.randrange(MAX_PARALLELISM)}, parallelism
    if kind == "suspend-resume":
        return {"mode": rng.choice(KEPT_STATE_MODES), "pause_s": down}, parallelism
    if kind == "rescale":
        target = rng.choice([p for p in range(MIN_PARALLELISM, MAX_PARALLELISM + 1) if p != parallelism])
        return {"parallelism": target, "mode": rng.choice(KEPT_STATE_MODES)}, target
    return {}, parallelism  # the upgrades


def kind_counts(steps: list[Step]) -> Counter[str]:
    """Steps per kind."""
    return Counter(s.kind for s in steps)


def format_schedule(seed: int, steps: list[Step]) -> str:
    """The schedule as printed for a failing run (one step a line)."""
    lines = [f"seed {seed}: {len(steps)} faults"]
    lines += [f"  {s.describe()}" for s in steps]
    return "\n".join(lines)
