"""The operations (deploy, restart, upgrade, rollback, suspend, resume, redeploy) as resumable steps.

Every operation is recorded in ``status.operation`` before its first action (``operation_starts``) and
advances one step per round here: SNAPSHOT (savepoint or fresh-enough checkpoint) → TEARDOWN (old pods
gone, then the restore point is fixed and shown in status) → WAIT (restart backoff) → DEPLOY → VERIFY
(Running; Finished when the attempt finishes as it starts; else fail / roll back on timeout). Each step is
idempotent, so an operator restart resumes the step it finds in status. The state an attempt
deploys with is decided only by ``restore_choice.choose_restore`` (in
``restore_steps.resolve_restore``). A failed attempt (``attempt_failed``) rolls back or restarts. Pure;
called by ``reconciler.plan``.
"""

from __future__ import annotations

from streamjob.operator.model.spec import StreamJobSpec, UpgradeMode
from streamjob.operator.model.status import (
    Deployment,
    LifecycleState,
    OperationKind,
    OperationStep,
    SnapshotRequest,
)
from streamjob.operator.reconciler import root_cause
from streamjob.operator.reconciler.facts import (
    DeletePods,
    DeployAttempt,
    DeployWorkers,
    Draft,
    TriggerCheckpoint,
    TriggerSavepoint,
)
from streamjob.operator.reconciler.operation_starts import abort, healthy, jobmaster_ip, start_restart, start_rollback
from streamjob.operator.reconciler.restore_steps import (
    FAST_GRACE,
    fail,
    record_lineage,
    resolve_restore,
    set_step,
    state_to_carry,
    target,
)
from streamjob.operator.reconciler.verdict import awaiting_jobmaster, final_failure
from streamjob.operator.reconciler.workers import replace_crashed_workers
from streamjob.operator.resources.configmap import Attempt
from streamjob.operator.timeutil import seconds_since
from streamjob.worker.protocol.rest import JobState

#: How long before a restart backoff ends the next attempt's pods are created: about the time their
#: processes need to start, so that the job's tasks are deployed when the backoff ends. The JobMaster
#: holds the deployment until then, and pods of the old attempt are gone before any is created.
PRESTART_S = 2.0

DONE_EVENT = {
    OperationKind.DEPLOY: "JobRunning",
    OperationKind.RESUME: "Resumed",
    OperationKind.RESTART: "Recovered",
    OperationKind.UPGRADE: "Upgraded",
    OperationKind.REDEPLOY: "Redeployed",
    OperationKind.ROLLBACK: "RolledBack",
}


# -- advancing -----------------------------------------------------------------------------------


def advance(d: Draft) -> None:
    """Moves the recorded operation forward as far as the facts allow this round."""
    for _ in range(4):
        op = d.status.operation
        if op is None:
            return
        before = op.step
        {
            OperationStep.SNAPSHOT: _snapshot,
            OperationStep.TEARDOWN: _teardown,
            OperationStep.WAIT: _wait,
            OperationStep.DEPLOY: _deploy,
            OperationStep.VERIFY: _verify,
        }[before](d)
        after = d.status.operation
        if after is None or after.step == before or before is OperationStep.DEPLOY or d.actions:
            return


def _elapsed(d: Draft) -> float:
    op = d.status.operation
    assert op is not None
    return seconds_since(op.step_started_at, d.facts.now) or 0.0


def _snapshot(d: Draft) -> None:
    op = d.status.operation
    assert op is not None
    live = d.facts.valid_spec
    spec = live if op.kind is OperationKind.SUSPEND and live is not None else target(d)
    req = d.status.snapshot_request
    savepoint_asked = req is not None and req.kind == "savepoint" and req.trigger == op.kind.value
    if spec.upgrade_mode is UpgradeMode.LAST_STATE and not savepoint_asked:
        # A suspension reads the live spec: upgradeMode may have become last-state since it began.
        if spec.max_state_age_seconds is not None:
            _fresh_checkpoint(d, spec)
        elif state_to_carry(d, ""):
            set_step(d, OperationStep.TEARDOWN)
        return
    if req is None:
        ip = jobmaster_ip(d)
        if ip is None or not healthy(d):
            if state_to_carry(d, "the job is unhealthy, so no savepoint can be taken"):
                d.event("SavepointSkipped", "job unhealthy; restoring the latest checkpoint instead", warning=True)
                set_step(d, OperationStep.TEARDOWN)
            return
        trigger = op.kind.value
        key = f"{d.facts.job.uid}:{trigger}:{d.now_text}"
        request = SnapshotRequest(kind="savepoint", trigger=trigger, stop=True, started_at=d.now_text, key=key)
        d.update(snapshot_request=request)
        d.act(TriggerSavepoint(jobmaster_ip=ip, stop=True))
        return
    if req.request_id is None and req.trigger == op.kind.value and _send_again(d, req):
        ip = jobmaster_ip(d)
        if ip is not None:
            d.act(TriggerSavepoint(jobmaster_ip=ip, stop=True))
    # Completion, failure and timeouts of the request are handled by plan.observe_snapshots.


def _send_again(d: Draft, req: SnapshotRequest) -> bool:
    """Whether the stop-with-savepoint without a request id is sent again this round.

    Never answered (the operator died after writing it): yes. Answered with an error (a lost answer, a
    timeout, "already in progress"): only with its request key, to a JobMaster that runs the job; the
    key makes the JobMaster answer the request it already started rather than start a second stop.
    """
    if req.error is None:
        return True
    jm = d.facts.jobmaster
    return req.key is not None and jm.reachable and jm.state == JobState.RUNNING


def savepoint_fallback(d: Draft, reason: str) -> None:
    """A savepoint for an upgrade or suspension failed: the latest checkpoint instead, or refuse."""
    if not state_to_carry(d, reason):
        return
    d.event("SavepointFailed", f"{reason}; continuing from the latest retained checkpoint", warning=True)
    set_step(d, OperationStep.TEARDOWN, restore_mode="pending")


def savepoint_taken(d: Draft, location: str) -> None:
    """The operation's savepoint completed: it is what the next attempt restores (as a new lineage)."""
    set_step(d, OperationStep.TEARDOWN, savepoint=location, restore_mode="pending")
    d.update(restore_from=location)  # shown at once; ``resolve_restore`` fixes it (to this) after the teardown


def _fresh_checkpoint(d: Draft, spec: StreamJobSpec) -> None:
    op = d.status.operation
    assert op is not None and spec.max_state_age_seconds is not None
    latest = d.facts.latest_of(op.job_id)
    age = seconds_since(latest.time, d.facts.now) if latest is not None else None
    if age is not None and age <= spec.max_state_age_seconds:
        set_step(d, OperationStep.TEARDOWN)
        return
    req = d.status.snapshot_request
    ip = jobmaster_ip(d)
    if req is None and ip is not None and healthy(d) and _elapsed(d) < spec.timeouts.savepoint_seconds:
        baseline = latest.id if latest is not None else None
        d.update(
            snapshot_request=SnapshotRequest(
                kind="checkpoint", trigger=op.kind.value, started_at=d.now_text, baseline_checkpoint_id=baseline
            )
        )
        d.act(TriggerCheckpoint(jobmaster_ip=ip))
        return
    if req is not None and _elapsed(d) < spec.timeouts.savepoint_seconds:
        return
    shown = "no checkpoint" if age is None else f"the latest checkpoint is {int(age)}s old"
    abort(
        d,
        f"{shown} and maxStateAgeSeconds is {spec.max_state_age_seconds}; no fresh checkpoint could be taken. "
        "Raise maxStateAgeSeconds, use upgradeMode savepoint, or restore by hand "
        "(initialSavepointPath + savepointRedeployNonce)",
    )


def _teardown(d: Draft) -> None:
    """Deletes the old pods; goes on once no process of theirs can run (a suspension: once they are gone).

    A pod in phase Failed or Succeeded has no running container (``restartPolicy: Never``), so it
    can no longer write checkpoints or commit sink transactions: the next attempt need not wait for
    the kubelet and the API server to remove its object (seconds on a real cluster). Pods still
    running, or in an unknown state, must be gone first: two attempts never run side by side.
    """
    op = d.status.operation
    assert op is not None
    if d.facts.pods:
        grace = FAST_GRACE if op.kind in (OperationKind.RESTART, OperationKind.ROLLBACK) else 5
        if _elapsed(d) > target(d).timeouts.teardown_seconds:
            grace = 0
        d.act(DeletePods(keep_attempt=None, grace_seconds=grace))
        if op.kind is OperationKind.SUSPEND or not all(p.terminated for p in d.facts.pods):
            return
    if op.restore_mode == "pending" and not resolve_restore(d):
        return
    op = d.status.operation
    assert op is not None
    if op.kind is OperationKind.SUSPEND:
        d.update(
            operation=None, deployment=None, lifecycle_state=LifecycleState.SUSPENDED, restore_from=op.restore_from
        )
        where = f"; resume restores {op.restore_from}" if op.restore_from else ""
        d.event("Suspended", f"job suspended{where}")
        return
    set_step(d, OperationStep.WAIT if op.not_before else OperationStep.DEPLOY)


def _wait(d: Draft) -> None:
    """The restart backoff: the next attempt's pods are created ``PRESTART_S`` before it ends.

    Their processes start (Python, imports, the restore point read from storage) while the backoff
    runs out, and the JobMaster holds the deployment of tasks until it has (``--hold-deploy``), so
    the job runs again no sooner than the policy says, without the start-up added on top of it.
    """
    if _backoff_left(d) <= PRESTART_S:
        set_step(d, OperationStep.DEPLOY)


def _backoff_left(d: Draft) -> float:
    op = d.status.operation
    assert op is not None
    return max(0.0, -(seconds_since(op.not_before, d.facts.now) or 0.0)) if op.not_before else 0.0


def _deploy(d: Draft) -> None:
    if d.status.operation is not None and d.status.operation.restore_mode == "pending" and not resolve_restore(d):
        return
    op = d.status.operation
    assert op is not None and op.job_id is not None and op.attempt is not None
    spec = target(d)
    if op.job_id != d.status.job_id or not d.status.lineage:
        record_lineage(d, op.job_id, op.restore_from, op.restore_reason)
    old = d.status.deployment
    dep = Deployment(
        attempt=op.attempt,
        job_id=op.job_id,
        spec=spec.wire(),
        restore_from=op.restore_from,
        started_at=d.now_text,
        generation=op.target_generation,
        # A rollback runs lastStableSpec while the spec holds the rejected change; a restart keeps that.
        rolled_back=op.kind is OperationKind.ROLLBACK
        or (op.kind is OperationKind.RESTART and old is not None and old.rolled_back),
    )
    d.update(
        deployment=dep,
        job_id=op.job_id,
        attempt=op.attempt,
        parallelism=spec.parallelism,
        restore_from=op.restore_from,
        last_checkpoint=d.status.last_checkpoint if d.status.job_id == op.job_id else None,
    )
    set_step(d, OperationStep.VERIFY)
    if any(p.attempt != op.attempt for p in d.facts.pods):  # ended pods whose objects are still going
        d.act(DeletePods(keep_attempt=op.attempt, grace_seconds=FAST_GRACE))
    hold = round(_backoff_left(d), 3)
    d.act(DeployAttempt(Attempt(d.facts.job, spec, op.attempt, op.job_id, op.restore_from, hold_deploy_s=hold)))


def _verify(d: Draft) -> None:
    op = d.status.operation
    dep = d.status.deployment
    assert op is not None and dep is not None
    spec = StreamJobSpec.parse(dep.spec)
    hold = round(_backoff_left(d), 3)  # a JobMaster pod created again still waits out the backoff
    attempt = Attempt(d.facts.job, spec, dep.attempt, dep.job_id, dep.restore_from, hold_deploy_s=hold)
    pods = d.facts.pods_of(dep.attempt)
    state = d.facts.jobmaster.state
    jm = next((p for p in pods if p.is_jobmaster), None)
    if (jm is not None and jm.succeeded) or state == JobState.FINISHED:
        _finished_at_start(d)  # e.g. it restored a snapshot taken after its sources' end of input
        return
    if replace_crashed_workers(d, dep):
        return  # the JobMaster deploys to the replacement as it comes
    if awaiting_jobmaster(d.facts.now, pods, reachable=d.facts.jobmaster.reachable, state=state):
        return  # workers ended or the job failed: the JobMaster's pod says next whether a restart can mend it
    final = final_failure(pods)
    failure = final or next((p.failure for p in pods if p.failure), None)
    if failure is None and state is not None and JobState(state).ended:
        failure = f"the JobMaster reports the job {state} while starting"
    timeout = spec.timeouts.upgrade_seconds if op.kind is not OperationKind.RESTART else spec.timeouts.pod_start_seconds
    if failure is None and _elapsed(d) > timeout:
        failure = f"attempt {dep.attempt} was not running within {timeout}s"
    if failure is not None:
        attempt_failed(d, spec, failure, final=final is not None)
        return
    if jm is None:
        if len(pods) == 0:
            d.act(DeployAttempt(attempt))
        else:
            attempt_failed(d, spec, f"the JobMaster pod of attempt {dep.attempt} disappeared")
        return
    if len(pods) < spec.worker_pods + 1:
        # Workers are created as soon as the JobMaster pod has an IP, so that their processes start
        # while the JobMaster's does (the two start-ups overlap instead of adding up, about a second
        # of every recovery): a slot retries connecting until the JobMaster serves, and the JobMaster
        # holds a slot that registers before it opens registrations (``SlotRegistry.wait_open``).
        if jm.ip:
            d.act(DeployWorkers(attempt, jm.ip))
        return
    if healthy(d):
        _finish(d)


def _finish(d: Draft) -> None:
    op = d.status.operation
    dep = d.status.deployment
    assert op is not None and dep is not None
    d.update(
        operation=None,
        lifecycle_state=dep.running_state,
        deployment=dep.model_copy(update={"running_since": d.now_text}),
    )
    if op.kind is not OperationKind.ROLLBACK:
        d.update(error=None)
    where = f" from {dep.restore_from}" if dep.restore_from else " with an empty state"
    why = f" ({op.restore_reason})" if op.restore_reason else ""
    d.update(held=None)
    d.event(DONE_EVENT[op.kind], f"job {dep.job_id} attempt {dep.attempt} is running{where}{why}")


def _finished_at_start(d: Draft) -> None:
    """The attempt being verified finished before it was seen running: the job is Finished, not failed.

    A job whose snapshot was taken after all its sources reached the end of their input (a Finished
    job revived with ``restartNonce`` or a spec change, or restarted as it was finishing) has
    nothing left to process: its JobMaster reports FINISHED and its pods succeed at once. Taking
    that for a failure restarted it from the same snapshot over and over; waiting for Running left
    it in Deploying until the operation's timeout.
    """
    op = d.status.operation
    dep = d.status.deployment
    assert op is not None and dep is not None
    d.update(
        operation=None,
        lifecycle_state=LifecycleState.FINISHED,
        held=None,
        deployment=dep.model_copy(update={"running_since": dep.running_since or d.now_text}),
    )
    if op.kind is not OperationKind.ROLLBACK:
        d.update(error=None)
    where = f" from {dep.restore_from}" if dep.restore_from else ""
    d.event("JobFinished", f"job {dep.job_id} finished: attempt {dep.attempt}{where} ended as soon as it started")


def attempt_failed(d: Draft, spec: StreamJobSpec, reason: str, *, final: bool = False) -> None:
    """An attempt failed (while starting or running): roll back an upgrade, else restart per policy.

    ``final``: its JobMaster said no restart can mend the failure (``verdict.final_failure``): the
    job fails at once whatever the restart policy allows, unless an upgrade can roll back; the
    user brings it back by fixing the spec or changing ``restartNonce`` (``plan._act_on_changes``).
    """
    reason = root_cause.attempt_failed(d, reason, final=final)
    op = d.status.operation
    dep = d.status.deployment
    upgrading = op is not None and op.kind in (OperationKind.UPGRADE, OperationKind.REDEPLOY)
    unstable_upgrade = op is None and dep is not None and not dep.stable and dep.spec != d.status.last_stable_spec
    can_roll_back = spec.rollback_on_failure and d.status.last_stable_spec is not None
    if op is not None and op.kind is OperationKind.ROLLBACK:
        fail(d, f"rollback failed: {reason}")
    elif (upgrading or unstable_upgrade) and can_roll_back:
        start_rollback(d, reason=reason)
    elif final:
        fail(
            d,
            f"{reason} — not restarted: a restart cannot mend it. Fix the cause (the spec, image or job) and "
            "apply the spec again, or change spec.restartNonce to run it again",
        )
    else:
        policy_spec = d.facts.valid_spec or spec  # an invalid spec's restart policy is not applied either
        start_restart(d, policy_spec, reason=reason, counted=True)
