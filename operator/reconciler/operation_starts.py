"""Starting an operation (deploy, restart, upgrade, rollback, suspend, resume, redeploy) or aborting one.

Each ``start_*`` records the operation in ``status.operation`` (its kind, first step, attempt and
restore intent) before any action, so that ``operations.advance`` takes it from there, in this round
or, after an operator restart, in a later one. An upgrade or suspension with nothing to carry over is
refused before any pod is deleted (``hold``). ``healthy`` and ``jobmaster_ip`` read the deployed
attempt's facts. Pure; called by ``reconciler.plan`` and ``reconciler.operations``.
"""

from __future__ import annotations

from datetime import timedelta

from streamjob.operator.model.spec import StreamJobSpec, UpgradeMode
from streamjob.operator.model.status import (
    LifecycleState,
    Operation,
    OperationKind,
    OperationStep,
    RestartsStatus,
)
from streamjob.operator.reconciler import root_cause
from streamjob.operator.reconciler.facts import (
    Draft,
)
from streamjob.operator.reconciler.restore_choice import NothingToRestore, choose_restore
from streamjob.operator.reconciler.restore_steps import (
    FAST_GRACE,
    fail,
    hold,
    remember_held,
    resolve_restore,
    state_to_carry,
)
from streamjob.operator.timeutil import format_time
from streamjob.worker.protocol.rest import JobState
from streamjob.worker.storage.layout import is_savepoint_location

LIFECYCLE_OF = {
    OperationKind.DEPLOY: LifecycleState.DEPLOYING,
    OperationKind.RESUME: LifecycleState.DEPLOYING,
    OperationKind.RESTART: LifecycleState.RECOVERING,
    OperationKind.UPGRADE: LifecycleState.UPGRADING,
    OperationKind.REDEPLOY: LifecycleState.UPGRADING,
    OperationKind.RESCALE: LifecycleState.UPGRADING,
    OperationKind.ROLLBACK: LifecycleState.ROLLING_BACK,
    OperationKind.SUSPEND: LifecycleState.SUSPENDING,
}


def healthy(d: Draft) -> bool:
    """The deployed attempt has all its pods Running and its JobMaster answers and runs."""
    dep = d.status.deployment
    if dep is None:
        return False
    pods = d.facts.pods_of(dep.attempt)
    spec = StreamJobSpec.parse(dep.spec)
    jm = d.facts.jobmaster
    state = jm.state or JobState.RUNNING  # a JobMaster that does not say is judged by its pods
    return (
        len(pods) == spec.worker_pods + 1
        and all(p.running for p in pods)
        and jm.reachable
        and state == JobState.RUNNING
    )


def jobmaster_ip(d: Draft) -> str | None:
    """The IP of the deployed attempt's JobMaster pod."""
    dep = d.status.deployment
    if dep is None:
        return None
    return next((p.ip for p in d.facts.pods_of(dep.attempt) if p.is_jobmaster and p.ip), None)


def _begin(d: Draft, op: Operation) -> None:
    d.update(operation=op, lifecycle_state=LIFECYCLE_OF[op.kind])


def _new_op(d: Draft, kind: OperationKind, step: OperationStep, **fields: object) -> Operation:
    base: dict[str, object] = {
        "kind": kind,
        "step": step,
        "started_at": d.now_text,
        "step_started_at": d.now_text,
        "attempt": d.status.attempt + 1,
        "job_id": d.status.job_id,
    }
    return Operation.model_validate(base | fields)


# -- starting operations -------------------------------------------------------------------------


def start_deploy(d: Draft, spec: StreamJobSpec, *, generation: int) -> None:
    """First deployment: a new jobId, restoring ``initialSavepointPath`` if set."""
    op = _new_op(
        d,
        OperationKind.DEPLOY,
        OperationStep.DEPLOY,
        target_spec=spec.wire(),
        target_generation=generation,
        intent="initial",
        reason="new StreamJob",
    )
    _begin(d, op)
    if not resolve_restore(d):
        return
    fixed = d.status.operation
    assert fixed is not None
    restore = fixed.restore_from
    d.event(
        "Deploying", f"deploying job {fixed.job_id} attempt {fixed.attempt}" + (f" from {restore}" if restore else "")
    )


def start_upgrade(d: Draft, spec: StreamJobSpec, *, generation: int, reason: str) -> None:
    """A spec change: carry the state over per ``upgradeMode``, never silently to an empty state."""
    mode = spec.upgrade_mode
    fields: dict[str, object] = {"target_spec": spec.wire(), "target_generation": generation, "reason": reason}
    skipped = ""
    if mode is UpgradeMode.STATELESS:
        fields["intent"] = "fresh"
        step = OperationStep.TEARDOWN
    elif mode is UpgradeMode.SAVEPOINT and healthy(d):
        step = OperationStep.SNAPSHOT
    elif mode is UpgradeMode.SAVEPOINT:
        step = OperationStep.TEARDOWN
        skipped = "the job is not running healthy, so no savepoint can be taken"
    else:
        step = OperationStep.SNAPSHOT if spec.max_state_age_seconds else OperationStep.TEARDOWN
    if d.status.deployment is None and step is OperationStep.SNAPSHOT:
        step = OperationStep.TEARDOWN
    fields.setdefault("intent", "carry")
    _begin(d, _new_op(d, OperationKind.UPGRADE, step, **fields))
    d.update(restarts=RestartsStatus(), held=None)
    d.event("SpecChanged", f"{reason}; upgrading with upgradeMode {mode.value}")
    if step is OperationStep.TEARDOWN and not state_to_carry(d, skipped):
        return
    if skipped:
        d.event("SavepointSkipped", f"{skipped}; restoring the latest checkpoint", warning=True)


def start_redeploy(d: Draft, spec: StreamJobSpec, *, generation: int) -> None:
    """``savepointRedeployNonce``: a new jobId restored from ``initialSavepointPath``."""
    op = _new_op(
        d,
        OperationKind.REDEPLOY,
        OperationStep.TEARDOWN,
        target_spec=spec.wire(),
        target_generation=generation,
        intent="requested",
        reason=f"savepointRedeployNonce {spec.savepoint_redeploy_nonce}",
    )
    _begin(d, op)
    d.update(restarts=RestartsStatus(), held=None)
    if not resolve_restore(d):
        return
    fixed = d.status.operation
    assert fixed is not None
    d.event("Redeploying", f"redeploying from {fixed.restore_from} as job {fixed.job_id}")


def start_suspend(d: Draft, spec: StreamJobSpec) -> None:
    """``state: suspended``: savepoint (or last-state / stateless) and delete the pods."""
    mode = spec.upgrade_mode
    step = OperationStep.SNAPSHOT if mode is UpgradeMode.SAVEPOINT and healthy(d) else OperationStep.TEARDOWN
    intent = "fresh" if mode is UpgradeMode.STATELESS else "carry"
    op = _new_op(d, OperationKind.SUSPEND, step, intent=intent, reason="state: suspended")
    _begin(d, op)
    d.update(held=None)
    d.event("Suspending", f"suspending with upgradeMode {mode.value}")
    if step is OperationStep.TEARDOWN:
        state_to_carry(d, "")


def start_resume(d: Draft, spec: StreamJobSpec, *, generation: int, reason: str) -> None:
    """``state: running`` after a suspension, or a Failed/Finished job brought back (nonce, spec change).

    A never-deployed job deploys as a first deploy; ``upgradeMode: stateless`` starts empty; a
    suspended job restores what its suspension kept; a Failed or Finished one continues its lineage
    (``choose_restore``'s revive) — the restore point is fixed once the old pods are gone.
    """
    st = d.status
    suspended = st.lifecycle_state is LifecycleState.SUSPENDED
    if st.job_id is None:
        intent = "initial"
    elif spec.upgrade_mode is UpgradeMode.STATELESS:
        intent = "fresh"
    else:
        intent = "carry" if suspended else "revive"
    kept = st.restore_from if suspended and is_savepoint_location(st.restore_from) else None
    op = _new_op(
        d,
        OperationKind.RESUME,
        OperationStep.TEARDOWN,
        target_spec=spec.wire(),
        target_generation=generation,
        intent=intent,
        savepoint=kept if intent == "carry" else None,
        reason=reason,
    )
    _begin(d, op)
    d.update(restarts=RestartsStatus(), held=None)
    d.event("Resuming", f"{reason}: resuming job {st.job_id or '-'} (upgradeMode {spec.upgrade_mode.value})")


def start_restart(d: Draft, spec: StreamJobSpec, *, reason: str, counted: bool) -> None:
    """Ends the attempt and schedules the next from the latest retained checkpoint.

    ``counted``: after a failure (per the restart policy; a lineage that began empty and never
    checkpointed restarts empty). Otherwise a ``restartNonce`` of a running job: planned, so like an
    upgrade it needs state to carry and is refused (the job keeps running) without any.
    """
    dep = d.status.deployment
    count = d.status.restarts.count + (1 if counted else 0)
    policy = spec.restart_policy
    wire = dep.spec if dep is not None else spec.wire()
    if not counted:
        probe = _new_op(d, OperationKind.RESTART, OperationStep.TEARDOWN, target_spec=wire, intent="carry")
        choice = choose_restore(d.facts, StreamJobSpec.parse(wire), probe)
        if isinstance(choice, NothingToRestore) and not choice.transient:
            _begin(d, probe)
            hold(d, choice.message, remember=False)
            return
    d.act(root_cause.delete_pods(d, FAST_GRACE))
    if counted:
        d.update(restarts=RestartsStatus(count=count, last_reason=reason, last_time=d.now_text))
    if counted and count > policy.max_restarts:
        fail(d, f"{reason}; gave up after {policy.max_restarts} restarts (restartPolicy.maxRestarts)")
        return
    delay = policy.delay_for(count) if counted else 0.0
    op = _new_op(
        d,
        OperationKind.RESTART,
        OperationStep.TEARDOWN,
        target_spec=wire,
        target_generation=dep.generation if dep is not None else d.facts.generation,
        restore_mode="pending",
        intent="recover" if counted else "carry",
        not_before=format_time(d.facts.now + timedelta(seconds=delay)),
        reason=reason,
    )
    _begin(d, op)
    d.event(
        "Restarting",
        f"{reason}; restart {count} of {policy.max_restarts} in {delay:g}s from the latest checkpoint",
        warning=counted,
    )


def start_rollback(d: Draft, *, reason: str) -> None:
    """A failed upgrade goes back to ``lastStableSpec`` with the state of the failed lineage."""
    op = _new_op(
        d,
        OperationKind.ROLLBACK,
        OperationStep.TEARDOWN,
        target_spec=d.status.last_stable_spec,
        restore_mode="pending",
        intent="recover",
        reason=reason,
    )
    d.act(root_cause.delete_pods(d, FAST_GRACE))
    _begin(d, op)
    message = f"upgrade failed: {reason}; rolling back to the last stable spec"
    d.update(error=root_cause.one_line(message))
    d.event("RollingBack", message, warning=True)


def abort(d: Draft, message: str) -> None:
    """Gives up an operation before any destructive step; the deployment keeps running.

    Like a change refused for lack of state (``hold``), the change is not taken for done: it is kept
    in ``status.held`` with ``lastReconciledSpec`` back at the deployed spec, and retried once a newer
    checkpoint completes or the spec changes again.
    """
    op = d.status.operation
    kind = op.kind.value if op is not None else "operation"
    dep = d.status.deployment
    state = dep.running_state if dep is not None else LifecycleState.FAILED
    text = f"{kind} aborted: {message}"
    if dep is not None and remember_held(d):
        text += (
            f"; the job keeps running its deployed spec, and the {kind} is retried once a newer checkpoint "
            "completes or the spec changes again"
        )
    text = root_cause.one_line(text)
    d.update(operation=None, lifecycle_state=state, error=text)
    d.event("OperationAborted", text, warning=True)
