"""The one decision about state: what a new deployment restores, or that there is nothing to restore.

The invariant (docs/user-guide.md, "When does a job start with empty state?"): a deployment starts
with an empty state only when the user asked for it — the first deploy without
``initialSavepointPath``, or ``upgradeMode: stateless`` — or when it continues a lineage that began
that way and never completed a checkpoint (a restart: no state of it was ever made durable). Every
other deployment restores the newest of: the savepoint the user asked for, the savepoint its
operation took, the latest retained snapshot of the job's lineage; with none, it is refused
(``NothingToRestore``) and the caller reports it as a Warning in ``status.error``.

``operations`` calls ``choose_restore`` for every operation that deploys (and for a suspension, to
know what the resume will restore) and nowhere else decides ``restoreFrom``. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streamjob.operator.model.snapshot import SnapshotState
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import LineageEntry, Operation, OperationKind, StreamJobStatus
from streamjob.operator.observer.facts import Facts
from streamjob.worker.storage.layout import is_savepoint_location

#: How to proceed when nothing can be restored, for messages.
HOW_TO_PROCEED = (
    "wait for the job to complete a checkpoint and change the spec again, set upgradeMode: stateless to "
    "start with an empty state, or restore a snapshot with initialSavepointPath + savepointRedeployNonce"
)


@dataclass(frozen=True)
class RestoreChoice:
    """What the next attempt deploys with: ``location`` None is an empty state (allowed by ``reason``)."""

    job_id: str
    location: str | None
    mode: Literal["savepoint", "checkpoint", "none"]
    reason: str
    new_lineage: bool


@dataclass(frozen=True)
class NothingToRestore:
    """No state to carry over and no permission to drop it; ``transient`` when storage was unreadable."""

    message: str
    transient: bool = False


def _mode(location: str) -> Literal["savepoint", "checkpoint"]:
    return "savepoint" if is_savepoint_location(location) else "checkpoint"


def head_entry(status: StreamJobStatus, job_id: str | None) -> LineageEntry | None:
    """The lineage record of ``job_id`` (None when the operator has none)."""
    return next((e for e in status.lineage if e.job_id == job_id), None)


def requested(facts: Facts, spec: StreamJobSpec) -> tuple[str, str] | NothingToRestore | None:
    """The snapshot the user asks for (location, reason): ``initialSavepointPath`` or ``restoreFrom`` by name.

    A StreamJobSnapshot not found, or not COMPLETED yet, is waited for (transient); a FAILED or
    ABANDONED one is refused.
    """
    if spec.restore_from is None:
        path = spec.initial_savepoint_path
        return (path, "initialSavepointPath") if path else None
    name = spec.restore_from.snapshot_name
    view = facts.restore_snapshot
    if view is None or view.name != name:
        return NothingToRestore(
            f"spec.restoreFrom.snapshotName: no StreamJobSnapshot {name!r} in namespace {facts.job.namespace}; "
            "create it or fix the name",
            transient=True,
        )
    if view.state is SnapshotState.COMPLETED and view.status.path:
        return view.status.path, f"StreamJobSnapshot {name}"
    state = view.state.value if view.state is not None else "new"
    settled = view.state is not None and view.state.settled
    why = f": {view.status.error}" if view.status.error else ""
    return NothingToRestore(
        f"spec.restoreFrom.snapshotName: StreamJobSnapshot {name} is {state}{why}"
        + ("; name a COMPLETED one" if settled else "; waiting for it to complete"),
        transient=not settled,
    )


def choose_restore(facts: Facts, spec: StreamJobSpec, intent: Operation) -> RestoreChoice | NothingToRestore:
    """The state the operation ``intent`` deploys (or, for a suspension, keeps for the resume)."""
    new_id = facts.new_job_id
    if intent.intent in ("initial", "requested"):
        asked = requested(facts, spec)
        if isinstance(asked, NothingToRestore):
            return asked
        if asked is not None:
            return RestoreChoice(new_id, asked[0], "savepoint", asked[1], True)
        if intent.intent == "initial":
            return RestoreChoice(new_id, None, "none", "first deploy without initialSavepointPath", True)
        return NothingToRestore("savepointRedeployNonce needs initialSavepointPath or restoreFrom to redeploy from")
    if intent.intent == "fresh":
        if intent.kind is OperationKind.SUSPEND:
            return RestoreChoice(intent.job_id or new_id, None, "none", "upgradeMode stateless", False)
        return RestoreChoice(new_id, None, "none", "upgradeMode stateless", True)
    if intent.savepoint:
        if intent.kind is OperationKind.SUSPEND:
            return RestoreChoice(
                intent.job_id or new_id, intent.savepoint, "savepoint", "the suspension's savepoint", False
            )
        return RestoreChoice(new_id, intent.savepoint, "savepoint", f"the {intent.kind.value}'s savepoint", True)
    return _from_lineage(facts, spec, intent)


def _from_lineage(facts: Facts, spec: StreamJobSpec, intent: Operation) -> RestoreChoice | NothingToRestore:
    """Carry, recover or revive: the newest snapshot of the lineage ``intent.job_id``."""
    head = intent.job_id or facts.status.job_id
    if head is None:
        return NothingToRestore("the job has no lineage to restore (no jobId was ever deployed); " + HOW_TO_PROCEED)
    if facts.storage_error is not None:
        return NothingToRestore(
            f"cannot read checkpoint storage to find the state to restore: {facts.storage_error}", transient=True
        )
    entry = head_entry(facts.status, head)
    latest = facts.latest_of(head)
    checkpoint = latest.location if latest is not None and latest.kind == "checkpoint" else None
    if checkpoint is not None:
        return RestoreChoice(head, checkpoint, "checkpoint", f"the latest retained checkpoint of job {head}", False)
    wanted = requested(facts, spec) if intent.intent == "revive" else None
    asked = wanted[0] if isinstance(wanted, tuple) else None
    started = (latest.location if latest is not None else None) or (entry.started_from if entry else None)
    dep = facts.status.deployment
    if started is None and dep is not None and dep.job_id == head and dep.restore_from:
        started = dep.restore_from
    if intent.intent == "revive" and asked and asked != started:
        # A Failed job that never completed a checkpoint, given a savepoint to start from: the user's.
        assert isinstance(wanted, tuple)
        return RestoreChoice(facts.new_job_id, asked, "savepoint", wanted[1], True)
    if started is not None:
        return RestoreChoice(head, started, _mode(started), f"the snapshot job {head} started from", False)
    began_empty = entry is not None and entry.started_from is None
    if intent.intent in ("recover", "revive") and began_empty:
        assert entry is not None
        reason = f"job {head} began with an empty state ({entry.reason}) and has no checkpoint yet"
        return RestoreChoice(head, None, "none", reason, False)
    return NothingToRestore(
        f"job {head} has no retained checkpoint or savepoint to restore, and an empty state was not asked "
        f"for; {HOW_TO_PROCEED}"
    )
