"""The steps of an operation that fix its state: the restore point, a refusal, the lineage (pure).

``resolve_restore`` applies ``restore_choice.choose_restore`` to the operation in status (the only
place a restore point is set), ``state_to_carry`` / ``hold`` refuse an upgrade, suspension or
``restartNonce`` with nothing to carry before any pod is deleted, ``fail`` ends in Failed, and
``record_lineage`` puts a new jobId in ``status.lineage``. Called by ``reconciler.operations``
(advancing) and ``reconciler.operation_starts`` (starting).
"""

from __future__ import annotations

from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import HeldChange, LifecycleState, LineageEntry, OperationStep
from streamjob.operator.reconciler import root_cause
from streamjob.operator.reconciler.facts import Draft
from streamjob.operator.reconciler.restore_choice import NothingToRestore, choose_restore
from streamjob.operator.reconciler.root_cause import one_line

#: jobIds kept in ``status.lineage``.
LINEAGE_SIZE = 10

#: Grace for pods of a failed attempt: long enough for the kubelet to stop the processes before the pod
#: object goes (0 would drop the object at once while old processes may still hold ports and files).
FAST_GRACE = 1


def target(d: Draft) -> StreamJobSpec:
    """The spec the operation deploys; a suspension's is the user's if valid (else the deployed one)."""
    op = d.status.operation
    assert op is not None
    if op.target_spec is not None:
        return StreamJobSpec.parse(op.target_spec)
    spec = d.facts.valid_spec
    if spec is None and d.status.deployment is not None:
        return StreamJobSpec.parse(d.status.deployment.spec)
    spec = spec or d.facts.spec
    assert spec is not None
    return spec


def set_step(d: Draft, step: OperationStep, **fields: object) -> None:
    """Moves the operation in status to ``step`` (restarting its timeout) with ``fields`` changed."""
    op = d.status.operation
    assert op is not None
    d.update(operation=op.model_copy(update={"step": step, "step_started_at": d.now_text, **fields}))


def fail(d: Draft, message: str) -> None:
    """Ends in Failed: pods deleted, the reason in status and an event."""
    d.act(root_cause.delete_pods(d, FAST_GRACE))
    message = one_line(message)
    d.update(operation=None, deployment=None, lifecycle_state=LifecycleState.FAILED, error=message)
    d.event("JobFailed", message, warning=True)


def hold(d: Draft, message: str, *, remember: bool = True) -> None:
    """Refuses an upgrade or suspension with no state to carry, before any pod is deleted.

    The job keeps its deployment (or stays as it is); ``status.error`` and a Warning say what is
    missing and how to go on. The refused spec is remembered in ``status.held``: ``plan`` retries
    it when the lineage's latest snapshot changes or the spec does, never in a loop (a refused
    ``restartNonce`` is not remembered: the nonce is handled).
    """
    op = d.status.operation
    assert op is not None
    dep = d.status.deployment
    text = f"{op.kind.value} refused, nothing to restore: {message}" + ("; the job keeps running" if dep else "")
    if remember:
        remember_held(d)
    d.update(
        operation=None,
        lifecycle_state=dep.running_state if dep is not None else LifecycleState.FAILED,
        error=text,
    )
    d.event("NoState", text, warning=True)


def remember_held(d: Draft) -> bool:
    """Keeps the change the operation in status was for in ``status.held``, as not done (False: none).

    ``lastReconciledSpec`` goes back to what is deployed (FKO's meaning: the spec running), so the
    change is not taken for done; ``plan`` retries it once the lineage's latest snapshot changes
    (``HeldChange.checkpoint``) or the spec does.
    """
    op = d.status.operation
    spec = d.facts.valid_spec
    wanted = op.target_spec if op is not None and op.target_spec is not None else (spec.wire() if spec else None)
    if wanted is None:
        return False
    dep = d.status.deployment
    latest = d.facts.latest_of(d.status.job_id)
    held = HeldChange(spec=wanted, checkpoint=latest.location if latest else None)
    d.update(held=held, last_reconciled_spec=dep.spec if dep is not None else d.status.last_reconciled_spec)
    return True


def state_to_carry(d: Draft, why: str) -> bool:
    """Before tearing down for an upgrade or suspension: False (and held) when no state could be restored."""
    op = d.status.operation
    assert op is not None
    if op.intent != "carry":
        return True
    choice = choose_restore(d.facts, target(d), op)
    if isinstance(choice, NothingToRestore) and not choice.transient:
        hold(d, f"{why}; {choice.message}" if why else choice.message)
        return False
    return True


def resolve_restore(d: Draft) -> bool:
    """Fixes the restore point (``choose_restore``) and shows it in status before any deployment.

    False while storage is unreadable (retried next round) and when there is nothing to restore:
    then the operation fails with a Warning — by now the old pods are gone (an upgrade or
    suspension was checked before its teardown), and an empty state is never deployed instead.
    """
    op = d.status.operation
    assert op is not None
    choice = choose_restore(d.facts, target(d), op)
    if isinstance(choice, NothingToRestore):
        if choice.transient:
            d.update(error=choice.message)
            return False
        message = f"{op.kind.value} failed, nothing to restore: {choice.message}"
        d.event("NoState", message, warning=True)
        fail(d, message)
        return False
    set_step(
        d,
        op.step,
        job_id=choice.job_id,
        restore_from=choice.location,
        restore_mode=choice.mode,
        restore_reason=choice.reason,
    )
    d.update(restore_from=choice.location)
    return True


def record_lineage(d: Draft, job_id: str, started_from: str | None, reason: str) -> None:
    """A new jobId goes on top of ``status.lineage`` (with the snapshot it starts from) before it deploys."""
    lineage = d.status.lineage
    if lineage and lineage[0].job_id == job_id:
        return
    entry = LineageEntry(
        job_id=job_id, started_from=started_from, parent=d.status.job_id, reason=reason, started_at=d.now_text
    )
    d.update(lineage=[entry, *[e for e in lineage if e.job_id != job_id]][:LINEAGE_SIZE])
