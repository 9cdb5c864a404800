"""Property tests of the planner: whatever happens, a job never silently restarts with an empty state.

Hypothesis drives ``PlannerWorld`` (the pure planner against fake pods, JobMaster and storage) with
random sequences of user changes (image, parallelism, upgradeMode, initialSavepointPath,
allowNonRestoredState, state, nonces) and world events (crashes, broken images, checkpoints
appearing or not, savepoints completing / failing / hanging, a silent JobMaster). ``Ledger``
records, from what it did and saw — not from the planner's status — which state exists, and
after every round checks each deployment the planner made:

- an empty state only on the first deploy without ``initialSavepointPath``, after the user chose
  ``upgradeMode: stateless``, or when recovering from a failure of a job that has no durable state
  since its last such start (no checkpoint, no stop-savepoint, no savepoint it started from);
- a restored snapshot is the newest durable one (or the savepoint the user names in
  ``initialSavepointPath``), and a checkpoint is restored under its own jobId (the lineage is kept);
- every ``NoState`` event is a Warning with ``status.error`` set.

``STREAMJOB_PLAN_EXAMPLES`` (default 150, about 10 s) sets the number of examples; a few thousand
take a minute or two and are worth a run after any change to the planner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamjob.operator.testing import Deployed, PlannerWorld

pytestmark = pytest.mark.unit

GOOD = "s3://b/x/savepoint-good"
BAD = "s3://b/x/savepoint-bad"  # holds state of an operator the pipeline no longer has
BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
    "restartPolicy": {"maxRestarts": 2, "backoff": {"initialDelaySeconds": 1, "maxDelaySeconds": 2}},
    "timeouts": {"savepointSeconds": 5, "upgradeSeconds": 15, "stableSeconds": 5, "teardownSeconds": 5},
}

USER = ("image", "parallelism", "upgradeMode", "initialSavepointPath", "allowNonRestoredState", "state")
NONCES = ("restartNonce", "savepointTriggerNonce", "checkpointTriggerNonce", "savepointRedeployNonce")

actions = st.one_of(
    st.tuples(st.just("rounds"), st.integers(1, 12)),
    st.tuples(st.just("image"), st.sampled_from(["app:1", "app:2", "app:broken"])),
    st.tuples(st.just("parallelism"), st.integers(1, 3)),
    st.tuples(st.just("upgradeMode"), st.sampled_from(["savepoint", "last-state", "stateless"])),
    st.tuples(st.just("initialSavepointPath"), st.sampled_from([None, GOOD, BAD])),
    st.tuples(st.just("allowNonRestoredState"), st.booleans()),
    st.tuples(st.just("state"), st.sampled_from(["running", "suspended"])),
    st.tuples(st.sampled_from(NONCES), st.none()),
    st.tuples(st.just("crash"), st.sampled_from(["jobmaster", "worker"])),
    st.tuples(st.just("checkpointing"), st.booleans()),
    st.tuples(st.just("savepoints"), st.sampled_from(["COMPLETED", "FAILED", "HANG"])),
    st.tuples(st.just("jm_answers"), st.booleans()),
)
initial_specs = st.fixed_dictionaries(
    {
        "upgradeMode": st.sampled_from(["savepoint", "last-state", "stateless"]),
        "initialSavepointPath": st.sampled_from([None, GOOD, BAD]),
        "state": st.sampled_from(["running", "running", "suspended"]),
    }
)


@dataclass
class Ledger:
    """The state that exists, kept from the world's side, and the checks of each new deployment."""

    world: PlannerWorld
    durable: list[str] = field(default_factory=list)  # snapshots that hold state, oldest first
    checkpoints_seen: set[tuple[str, int]] = field(default_factory=set)
    savepoints_seen: set[str] = field(default_factory=set)
    deployments_seen: int = 0
    failed_since_deploy: bool = False
    events_seen: int = 0
    #: Per operation (by start time): whether the spec said stateless, and its initialSavepointPath.
    op_stateless: dict[str, bool] = field(default_factory=dict)
    op_asked: dict[str, str | None] = field(default_factory=dict)

    def after_round(self) -> None:
        w = self.world
        op = w.status.operation
        if op is not None and op.started_at not in self.op_stateless:
            self.op_stateless[op.started_at] = w.spec.get("upgradeMode") == "stateless"
            self.op_asked[op.started_at] = w.spec.get("initialSavepointPath")
        for deployed in w.deployments[self.deployments_seen :]:
            self.check_deploy(deployed)
        self.deployments_seen = len(w.deployments)
        self.collect_durable()
        if any(p.failure for p in w.pods.values()) or not w.jm_answers:  # a crash, or a hung JobMaster
            self.failed_since_deploy = True
        for reason, message in w.events[self.events_seen :]:
            if reason == "NoState":
                assert (reason, message) in w.warnings, f"NoState must be a Warning: {message}"
                assert w.status.error, f"NoState without status.error: {message}"
        self.events_seen = len(w.events)

    def collect_durable(self) -> None:
        w = self.world
        stops = {f"s3://b/c/ns/demo/savepoint-{rid}" for rid, stop in w.stop_requests.items() if stop}
        for location in w.savepoints:
            if location not in self.savepoints_seen and location in stops:
                self.savepoints_seen.add(location)
                self.durable.append(location)
        for job_id, ids in w.checkpoints.items():
            for n in ids:
                if (job_id, n) not in self.checkpoints_seen:
                    self.checkpoints_seen.add((job_id, n))
                    self.durable.append(w.checkpoint_location(job_id, n))

    def check_deploy(self, d: Deployed) -> None:
        w = self.world
        first = d is w.deployments[0]
        started = d.operation_started_at or ""
        stateless = self.op_stateless.get(started, False)
        asked = self.op_asked.get(started)
        where = f"attempt {d.attempt} ({d.operation}) of job {d.job_id}"
        if d.restore_from is None:
            allowed = (first and not asked) or stateless or (self.failed_since_deploy and not self.durable)
            assert allowed, f"{where} deployed with an empty state while {self.durable[-1:]} holds its state"
            if first or stateless:
                self.durable.clear()  # the user chose to start over: older state is no longer owed
        else:
            newest = self.durable[-1] if self.durable else None
            if not stateless:
                assert d.restore_from in (newest, asked), f"{where} restored {d.restore_from}, newest is {newest}"
            if "/chk-" in d.restore_from:
                lineage = d.restore_from.rsplit("/", 2)[-2]
                assert d.job_id == lineage, f"{where} restored {d.restore_from} under another jobId"
            if d.restore_from != newest:
                self.durable.append(d.restore_from)  # a savepoint the user named now holds the state
        self.failed_since_deploy = False


def apply(w: PlannerWorld, ledger: Ledger, action: tuple[str, Any]) -> None:
    kind, value = action
    if kind == "rounds":
        for _ in range(value):
            w.step()
            ledger.after_round()
        return
    if kind in USER or kind in NONCES:
        if kind in NONCES:
            value = int(w.spec.get(kind) or 0) + 1
            if kind == "savepointRedeployNonce" and not w.spec.get("initialSavepointPath"):
                return  # the API server refuses it (CEL rule)
        if kind == "initialSavepointPath" and value is None:
            if w.spec.get("savepointRedeployNonce") is not None:
                return  # likewise
            w.spec = {k: v for k, v in w.spec.items() if k != kind}
            w.generation += 1
        else:
            w.spec = {**w.spec, kind: value}
            w.generation += 1
    elif kind == "crash":
        dep = w.status.deployment
        role = "jobmaster-{}" if value == "jobmaster" else "worker-{}-0"
        victim = f"demo-{role.format(dep.attempt)}" if dep is not None else ""
        if victim in w.pods:
            w.pods[victim].failure = f"pod {victim} exited with code 137"
            ledger.failed_since_deploy = True
    elif kind == "checkpointing":
        w.checkpointing = value
    elif kind == "savepoints":
        w.savepoint_outcome = value
    elif kind == "jm_answers":
        w.jm_answers = value
    w.step()
    ledger.after_round()


def run(first: dict[str, Any], steps: list[tuple[str, Any]], planner: Any = None) -> None:
    spec = {**BASE, **{k: v for k, v in first.items() if v is not None}}
    w = PlannerWorld(spec) if planner is None else PlannerWorld(spec, planner)
    w.broken_images.add("app:broken")
    w.unrestorable.add(BAD)
    ledger = Ledger(w)
    ledger.after_round()
    for action in steps:
        apply(w, ledger, action)
    for _ in range(20):  # let the last operation play out
        w.step()
        ledger.after_round()


EXAMPLES = int(os.environ.get("STREAMJOB_PLAN_EXAMPLES", "150"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=initial_specs, steps=st.lists(actions, max_size=25))
def test_no_deployment_starts_with_an_empty_state_unless_asked(
    first: dict[str, Any], steps: list[tuple[str, Any]]
) -> None:
    run(first, steps)


def test_the_ledger_catches_a_silent_empty_restart() -> None:
    """The checker itself can fail: a planner that drops the restore point is caught."""
    from streamjob.operator.observer.facts import Facts
    from streamjob.operator.reconciler.facts import DeployAttempt, Plan
    from streamjob.operator.reconciler.plan import plan

    def forgetful(facts: Facts) -> Plan:
        result = plan(facts)
        dropped = [
            DeployAttempt(a.attempt.__class__(**{**a.attempt.__dict__, "restore_from": None}))
            if isinstance(a, DeployAttempt)
            else a
            for a in result.actions
        ]
        return Plan(result.status, tuple(dropped), result.events)

    with pytest.raises(AssertionError, match="empty state"):
        run({"upgradeMode": "savepoint"}, [("rounds", 12), ("crash", "worker"), ("rounds", 12)], forgetful)
