"""Facts → plan: the one decision function of the operator (pure).

Each round: record spec problems; keep the JobMaster's report of a failure (``root_cause.observe``);
fold finished snapshots (checkpoints found in storage, savepoint
answers) into status and report corrupt checkpoints storage discovery skipped; then either advance
the operation in flight (``operations.advance``) or, with none, replace crashed worker pods
(``workers``: the JobMaster recovers in place) or detect a failed attempt, start (``operation_starts``) the
operation a spec change or a nonce asks for, or trigger a manual savepoint/checkpoint; finally keep
the derived status (stable, restart reset, checkpoint progress, ``conditions``) current and delete
the kept pods of failed attempts whose time is up (``root_cause.sweep``). A refused spec (invalid,
or a change ``validate_change`` refuses) refuses only the change: a deployed job stays supervised
with the spec it was deployed with (``_supervise``). ``observedGeneration`` is the generation of
``lastReconciledSpec``. Events follow ``event_policy``. ``controller`` calls ``plan`` with observed facts.
"""

from __future__ import annotations

from streamjob.operator.diff import ChangeKind, classify
from streamjob.operator.model.jobmaster import SavepointPoll
from streamjob.operator.model.snapshot import USER_TRIGGER
from streamjob.operator.model.spec import JobState, StreamJobSpec
from streamjob.operator.model.status import (
    Deployment,
    LifecycleState,
    NonceStatus,
    OperationKind,
    OperationStep,
    RestartsStatus,
    SnapshotInfo,
    SnapshotRequest,
)
from streamjob.operator.observer.facts import Facts
from streamjob.operator.reconciler import conditions, rescale, root_cause, snapshot_resources
from streamjob.operator.reconciler import operation_starts as starts
from streamjob.operator.reconciler import operations as ops
from streamjob.operator.reconciler.conditions import Progress
from streamjob.operator.reconciler.corrupt import report_corrupt
from streamjob.operator.reconciler.facts import Draft, Plan, TriggerCheckpoint, TriggerSavepoint
from streamjob.operator.reconciler.verdict import awaiting_jobmaster, final_failure
from streamjob.operator.reconciler.workers import replace_crashed_workers
from streamjob.operator.resources.labels import worker_selector
from streamjob.operator.timeutil import parse_time, seconds_since
from streamjob.operator.validation import validate_change
from streamjob.worker.protocol.rest import JobState as RunState

SPEC_ERROR = "invalid spec: "
FINISHED = "finished"


def plan(facts: Facts) -> Plan:
    """The status to write and the actions to take for this round."""
    d = Draft(facts)
    d.update(selector=worker_selector(facts.job))
    spec_error = _check_spec(d)
    root_cause.observe(d)
    observe_snapshots(d)
    report_corrupt(d)
    if d.status.operation is not None and d.status.operation.kind is OperationKind.RESCALE:
        rescale.advance(d)
    elif d.status.operation is not None:
        ops.advance(d)
    elif spec_error is None:
        _steady(d)
    elif d.status.deployment is not None:
        _supervise(d)
    if spec_error is not None and d.status.error is None:
        d.update(error=spec_error)  # e.g. a restart that completed this round cleared it: still refused
    _bookkeeping(d)
    root_cause.sweep(d)
    snapshot_resources.sync(d)
    _observed_generation(d)
    return d.plan()


def _check_spec(d: Draft) -> str | None:
    """Records whether the spec is valid; the error (None: valid). Reported once per message."""
    f = d.facts
    if f.spec is None or f.spec_errors:
        message = SPEC_ERROR + "; ".join(f.spec_errors or ("the spec does not parse",))
        old = d.status.condition("SpecValid")
        if d.status.error != message and (old is None or old.status != "False" or old.message != message):
            d.event("InvalidSpec", message, warning=True)
        d.update(error=message)
        d.condition("SpecValid", False, "InvalidSpec", message)
        return message
    if d.status.error and d.status.error.startswith(SPEC_ERROR):
        d.update(error=None)
    d.condition("SpecValid", True, "Valid")
    return None


def _observed_generation(d: Draft) -> None:
    """``observedGeneration``: the generation of ``lastReconciledSpec`` (as in FKO, what is deployed or deploying).

    The user's generation once its spec was acted on; while a change is refused (an invalid spec) or
    held (nothing to carry, an aborted upgrade), the deployed spec's generation: never one not running.
    """
    f, st = d.facts, d.status
    spec, dep = f.valid_spec, st.deployment
    reconciled = st.last_reconciled_spec
    if spec is not None and reconciled is not None and StreamJobSpec.parse(reconciled) == spec:
        d.update(observed_generation=f.generation)
    elif dep is not None and dep.generation is not None and dep.spec == reconciled:
        d.update(observed_generation=dep.generation)


# -- snapshots -----------------------------------------------------------------------------------


def observe_snapshots(d: Draft) -> None:
    """Publishes the latest checkpoint found in storage and settles the snapshot request in flight."""
    f = d.facts
    latest = f.latest_of(d.status.job_id)
    last = d.status.last_checkpoint
    if (
        latest is not None
        and latest.kind == "checkpoint"
        and (last is None or (last.id, last.job_id) != (latest.id, latest.job_id))
    ):
        d.update(last_checkpoint=latest)  # progress goes to status and metrics, never to an Event per checkpoint
    req = d.status.snapshot_request
    if req is None:
        return
    age = seconds_since(req.started_at, f.now) or 0.0
    spec = f.valid_spec or _deployed_spec(d)
    timeout = spec.timeouts.savepoint_seconds if spec is not None else 300
    if req.kind == "checkpoint":
        if latest is not None and latest.kind == "checkpoint" and (latest.id or 0) > (req.baseline_checkpoint_id or -1):
            _request_done(d, req)
            snapshot_resources.settle(d, req, location=latest.location, failure=None)
            d.event("CheckpointTriggered", f"checkpoint {latest.id} completed on request ({req.trigger})")
        elif req.error is not None or age > timeout:
            _request_done(d, req)
            why = req.error or f"no new checkpoint within {timeout}s"
            snapshot_resources.settle(d, req, location=None, failure=why)
            d.event("CheckpointFailed", f"requested checkpoint failed: {why}", warning=True)
        return
    _settle_savepoint(d, req, age=age, timeout=timeout)


def _settle_savepoint(d: Draft, req: SnapshotRequest, *, age: float, timeout: int) -> None:
    f = d.facts
    poll = f.savepoint_poll if req.request_id is not None else None
    location: str | None = None
    failure: str | None = None
    if req.stop:
        location, failure = _stop_outcome(d, req, poll, age=age, timeout=timeout)
    elif req.error is not None:
        failure = req.error
    elif poll is not None and poll.status == "COMPLETED" and poll.location:
        location = poll.location
    elif poll is not None and poll.status == "FAILED":
        failure = poll.reason or "the JobMaster reports the savepoint FAILED"
    elif poll is not None and poll.status == "UNKNOWN":
        failure = f"the JobMaster does not know savepoint request {req.request_id} (it restarted?)"
    elif f.recent_savepoint is not None:
        location = f.recent_savepoint.location
    elif age > timeout:
        failure = f"savepoint not completed within {timeout}s"
    if location is None and failure is None:
        return
    _request_done(d, req)
    snapshot_resources.settle(d, req, location=location, failure=failure)
    op = d.status.operation
    for_op = op is not None and op.step is OperationStep.SNAPSHOT and req.trigger == op.kind.value
    if location is not None:
        _record_savepoint(d, req, location)
        if for_op:
            ops.savepoint_taken(d, location)
    else:
        message = f"savepoint ({req.trigger}) failed: {failure}"
        d.update(error=message)
        if for_op:
            ops.savepoint_fallback(d, message)
        else:
            d.event("SavepointFailed", message, warning=True)


def _stop_outcome(
    d: Draft, req: SnapshotRequest, poll: SavepointPoll | None, *, age: float, timeout: int
) -> tuple[str | None, str | None]:
    """The savepoint a stop-with-savepoint wrote (location), why there is none (failure), or neither: wait.

    An error answering the trigger (a timeout, a dropped connection, "already in progress" on a
    re-send) is no proof that no savepoint was taken: the stop may have completed and committed the
    sinks' transactions. So: the JobMaster's COMPLETED answer, else a savepoint found in storage since
    the request; else its FAILED answer; else, once the job has stopped (its JobMaster pod ended or
    gone, or it reports a terminal state), storage is the truth: no savepoint, and the teardown restores
    the newest checkpoint the stopped job wrote. Only a JobMaster that still runs the job (or never
    answers) without a savepoint for ``timeouts.savepointSeconds`` makes the operation fall back before
    the job stopped. Until one of these, the request waits and says in status what for.
    """
    f = d.facts
    if poll is not None and poll.status == "COMPLETED" and poll.location:
        return poll.location, None
    if f.recent_savepoint is not None:
        return f.recent_savepoint.location, None
    if poll is not None and poll.status == "FAILED":
        return None, poll.reason or "the JobMaster reports the savepoint FAILED"
    answer = f" (the trigger's answer: {req.error})" if req.error is not None else ""
    if f.storage_error is None and _job_stopped(d):
        return None, f"the job stopped and storage holds no savepoint taken since the request{answer}"
    if poll is not None and poll.status == "UNKNOWN" and f.storage_error is None:
        return None, f"the JobMaster does not know savepoint request {req.request_id} (it restarted?)"
    if age > timeout:
        if f.jobmaster.reachable:
            return None, f"the job still runs ({f.jobmaster.state}) without a savepoint after {timeout}s{answer}"
        return None, f"the JobMaster did not answer and no savepoint appeared within {timeout}s{answer}"
    if f.storage_error is not None:
        waiting = f"storage to be readable, to look for the savepoint ({f.storage_error})"
    elif req.request_id is not None and f.jobmaster.reachable:
        waiting = f"savepoint request {req.request_id} to complete (the JobMaster: {poll.status if poll else '?'})"
    elif req.error is not None and f.jobmaster.reachable:
        again = ", sent again with its request key" if req.key is not None else ""
        waiting = (
            f"the answer to the savepoint trigger{again}{answer}; "
            f"the job still runs: falling back to the latest checkpoint after {timeout}s"
        )
    else:
        waiting = "the JobMaster to answer, or the job to stop (then storage shows whether the savepoint was taken)"
    if req.waiting_for != waiting:
        d.update(snapshot_request=req.model_copy(update={"waiting_for": waiting}))
    return None, None


def _job_stopped(d: Draft) -> bool:
    """Whether the attempt's job can no longer take or complete a savepoint (its JobMaster ended or says so)."""
    f = d.facts
    if f.jobmaster.reachable:
        return f.jobmaster.state in (RunState.FINISHED, RunState.CANCELED, RunState.FAILED)
    dep = d.status.deployment
    if dep is None:
        return True
    jm = next((p for p in f.pods_of(dep.attempt) if p.is_jobmaster), None)
    return jm is None or jm.terminated


def _record_savepoint(d: Draft, req: SnapshotRequest, location: str) -> None:
    found = d.facts.recent_savepoint
    base = found if found is not None and found.location == location else None
    info = base or SnapshotInfo(kind="savepoint", location=location, job_id=d.status.job_id, time=d.now_text)
    info = info.model_copy(update={"trigger": req.trigger, "time": info.time or d.now_text})
    size = d.facts.spec.savepoint_history_size if d.facts.spec is not None else 10
    history = [info, *[s for s in d.status.savepoint_history if s.location != location]][:size]
    d.update(last_savepoint=info, savepoint_history=history)
    d.event("SavepointCompleted", f"savepoint ({req.trigger}) completed: {location}")


def _request_done(d: Draft, req: SnapshotRequest) -> None:
    nonces = d.status.nonces
    if req.trigger == "manual" and req.nonce is not None:
        field = "savepoint" if req.kind == "savepoint" else "checkpoint"
        nonces = nonces.model_copy(update={field: req.nonce})
    d.update(snapshot_request=None, nonces=nonces)


def _deployed_spec(d: Draft) -> StreamJobSpec | None:
    dep = d.status.deployment
    return StreamJobSpec.parse(dep.spec) if dep is not None else None


# -- steady state --------------------------------------------------------------------------------


def _handled_nonces(spec: StreamJobSpec) -> NonceStatus:
    return NonceStatus(
        savepoint=spec.savepoint_trigger_nonce,
        checkpoint=spec.checkpoint_trigger_nonce,
        restart=spec.restart_nonce,
        savepoint_redeploy=spec.savepoint_redeploy_nonce,
    )


def _steady(d: Draft) -> None:
    f = d.facts
    spec = f.spec
    assert spec is not None
    st = d.status
    if st.job_id is None and st.deployment is None and st.lifecycle_state is LifecycleState.CREATED:
        d.update(last_reconciled_spec=spec.wire(), nonces=_handled_nonces(spec))
        if spec.state is JobState.SUSPENDED:
            d.update(lifecycle_state=LifecycleState.SUSPENDED)
            return
        starts.start_deploy(d, spec, generation=f.generation)
        return
    if _ended_or_failed(d, spec):
        return
    _act_on_changes(d, spec)


def _ended_or_failed(d: Draft, spec: StreamJobSpec) -> bool:
    """Failure detection of the deployed attempt: True when it finished or failed (and was acted on)."""
    st = d.status
    dep = st.deployment
    if dep is None or st.lifecycle_state is LifecycleState.FINISHED:
        return False
    failure = _attempt_failure(d, dep)
    if failure == FINISHED:
        d.update(lifecycle_state=LifecycleState.FINISHED)
        d.event("JobFinished", f"job {dep.job_id} finished")
        return True
    if failure is not None:
        ops.attempt_failed(d, spec, failure, final=final_failure(d.facts.pods_of(dep.attempt)) is not None)
        return True
    return False


def _supervise(d: Draft) -> None:
    """The spec (or its change) is refused, a job is deployed: it stays supervised as it was deployed.

    Failures are detected, workers replaced and restarts made with the deployed spec and its restart
    policy (never the refused one); manual and periodic snapshots are still taken (they redeploy
    nothing). Only the change waits: the user fixes the spec (``status.error`` says how).
    """
    dep = d.status.deployment
    assert dep is not None
    deployed = StreamJobSpec.parse(dep.spec)
    if not _ended_or_failed(d, deployed):
        _deployed_triggers(d)


def _deployed_triggers(d: Draft) -> None:
    """Snapshot triggers while a change is refused: the deployed spec's, with the user's trigger nonces."""
    dep = d.status.deployment
    assert dep is not None
    spec = StreamJobSpec.parse(dep.spec)
    user = d.facts.spec
    if user is not None:  # a requested savepoint or checkpoint redeploys nothing: it is taken
        nonces = ("savepoint_trigger_nonce", "checkpoint_trigger_nonce")
        spec = spec.model_copy(update={k: getattr(user, k) for k in nonces})
    _triggers(d, spec)


def _act_on_changes(d: Draft, spec: StreamJobSpec) -> None:
    f = d.facts
    st = d.status
    last = StreamJobSpec.parse(st.last_reconciled_spec) if st.last_reconciled_spec else None
    change = classify(last, spec)
    problems = validate_change(last, spec) if change.redeploys else []
    if problems:
        message = SPEC_ERROR + "; ".join(problems)
        if st.error != message:
            d.event("InvalidSpecChange", message, warning=True)
        d.update(error=message)
        if st.deployment is not None:
            _deployed_triggers(d)
        return
    dep = st.deployment
    gen = f.generation
    if spec.state is JobState.SUSPENDED and not _still_held(d, spec):
        d.update(last_reconciled_spec=spec.wire())
        if dep is not None and st.lifecycle_state is not LifecycleState.FINISHED:
            starts.start_suspend(d, spec)
        elif st.lifecycle_state is not LifecycleState.SUSPENDED:
            d.update(lifecycle_state=LifecycleState.SUSPENDED)
        return
    restart_pending = spec.restart_nonce != st.nonces.restart
    redeploy_pending = (
        spec.savepoint_redeploy_nonce is not None and spec.savepoint_redeploy_nonce != st.nonces.savepoint_redeploy
    )
    ended = dep is None or st.lifecycle_state in (LifecycleState.FAILED, LifecycleState.FINISHED)
    held = _still_held(d, spec)
    if redeploy_pending:
        d.update(
            last_reconciled_spec=spec.wire(),
            nonces=st.nonces.model_copy(update={"savepoint_redeploy": spec.savepoint_redeploy_nonce}),
        )
        starts.start_redeploy(d, spec, generation=gen)
    elif ended and (
        st.lifecycle_state is LifecycleState.SUSPENDED or change.kind is not ChangeKind.NONE or restart_pending
    ):
        d.update(last_reconciled_spec=spec.wire(), nonces=st.nonces.model_copy(update={"restart": spec.restart_nonce}))
        if st.lifecycle_state is LifecycleState.SUSPENDED:
            reason = "state: running"
        elif restart_pending:
            reason = f"restartNonce {spec.restart_nonce}"
        else:
            reason = f"spec changed: {change.describe()}"
        starts.start_resume(d, spec, generation=gen, reason=reason)
    elif ended:
        return
    elif restart_pending:
        d.update(nonces=st.nonces.model_copy(update={"restart": spec.restart_nonce}))
        starts.start_restart(d, spec, reason=f"restartNonce {spec.restart_nonce}", counted=False)
    elif held:
        _triggers(d, spec)
    elif change.kind is ChangeKind.SCALE:
        d.update(last_reconciled_spec=spec.wire())
        rescale.start(d, spec, generation=gen, change=change)
    elif change.redeploys:
        d.update(last_reconciled_spec=spec.wire())
        starts.start_upgrade(d, spec, generation=gen, reason=f"spec changed: {change.describe()}")
    else:
        if change.kind is not ChangeKind.NONE:
            d.update(last_reconciled_spec=spec.wire())
        _triggers(d, spec)


def _still_held(d: Draft, spec: StreamJobSpec) -> bool:
    """A refused upgrade/suspension stays refused until the spec or the lineage's latest snapshot changes.

    Then it is released (and ``status.error`` with it): the change is retried by the normal path.
    """
    held = d.status.held
    if held is None:
        return False
    latest = d.facts.latest_of(d.status.job_id)
    if held.spec == spec.wire() and held.checkpoint == (latest.location if latest else None):
        return True
    d.update(held=None, error=None)
    return False


def _attempt_failure(d: Draft, dep: Deployment) -> str | None:
    f = d.facts
    pods = f.pods_of(dep.attempt)
    jm = next((p for p in pods if p.is_jobmaster), None)
    state = f.jobmaster.state
    if (jm is not None and jm.succeeded) or state == RunState.FINISHED:
        return FINISHED
    if replace_crashed_workers(d, dep):
        return None  # the JobMaster recovers in place with the replacement
    if awaiting_jobmaster(f.now, pods, reachable=f.jobmaster.reachable, state=state):
        return None  # its verdict follows: the job finishing, or a failure no restart can mend
    failed = [p for p in pods if p.failure]
    if failed:
        return final_failure(pods) or failed[0].failure
    expected = StreamJobSpec.parse(dep.spec).worker_pods + 1
    if len(pods) < expected:
        return f"{expected - len(pods)} of {expected} pods of attempt {dep.attempt} disappeared"
    stopped = [p for p in pods if p.succeeded]
    if stopped:
        return f"pod {stopped[0].name} exited while the job was running"
    if state in (RunState.FAILED, RunState.CANCELED):
        return f"the JobMaster reports the job {state}"
    return None


def _triggers(d: Draft, spec: StreamJobSpec) -> None:
    st = d.status
    ip = starts.jobmaster_ip(d)
    ready = ip is not None and starts.healthy(d) and st.lifecycle_state.running
    req = st.snapshot_request
    if req is not None:
        # Written ahead, never answered: the operator died before it reached the JobMaster (an answer
        # sets the request id or the error in the same round). Send it again, as an operation's
        # snapshot step does, instead of waiting out timeouts.savepointSeconds for nothing.
        lost = (
            req.kind == "savepoint"
            and req.trigger in ("manual", "periodic", USER_TRIGGER)
            and req.request_id is None
            and req.error is None
        )
        if lost and ready and ip is not None:
            d.act(TriggerSavepoint(jobmaster_ip=ip, stop=False))
        return
    sp, cp = spec.savepoint_trigger_nonce, spec.checkpoint_trigger_nonce
    if sp is not None and sp != st.nonces.savepoint:
        if ready and ip is not None:
            d.update(
                snapshot_request=SnapshotRequest(kind="savepoint", trigger="manual", nonce=sp, started_at=d.now_text)
            )
            d.act(TriggerSavepoint(jobmaster_ip=ip, stop=False))
        elif st.deployment is None:
            d.update(nonces=st.nonces.model_copy(update={"savepoint": sp}))
            d.event("SavepointFailed", "savepointTriggerNonce changed but the job is not running", warning=True)
        return
    if cp is not None and cp != st.nonces.checkpoint:
        latest = d.facts.latest_of(st.job_id)
        if ready and ip is not None:
            baseline = latest.id if latest is not None else None
            req = SnapshotRequest(
                kind="checkpoint", trigger="manual", nonce=cp, started_at=d.now_text, baseline_checkpoint_id=baseline
            )
            d.update(snapshot_request=req)
            d.act(TriggerCheckpoint(jobmaster_ip=ip))
        elif st.deployment is None:
            d.update(nonces=st.nonces.model_copy(update={"checkpoint": cp}))
            d.event("CheckpointFailed", "checkpointTriggerNonce changed but the job is not running", warning=True)
        return
    if ready and ip is not None and d.facts.snapshots_listed and snapshot_resources.trigger_user_snapshot(d, ip):
        return
    if ready and ip is not None:
        snapshot_resources.periodic(d, spec, ip)


# -- derived status ------------------------------------------------------------------------------


def _bookkeeping(d: Draft) -> None:
    f = d.facts
    state = f.jobmaster.state
    d.update(job_state=(RunState(state).value if state else None) if f.jobmaster.reachable else d.status.job_state)
    d.update(standby_workers=_standby_ready(d))
    count_in_place_restarts(d)
    conditions.apply(d, _running_bookkeeping(d))


def count_in_place_restarts(d: Draft) -> None:
    """Adds the JobMaster's own restarts (a worker failed, the JobMaster redeployed in place) to the status.

    The JobMaster counts per process; the deployment keeps the count last read, so a replaced JobMaster
    (whose count starts again at 0) adds from there, and each restart is counted once.
    """
    jm, dep = d.facts.jobmaster, d.status.deployment
    if dep is None or not jm.reachable or jm.restarts is None:
        return
    seen = dep.jobmaster_restarts
    if jm.restarts == seen:
        return
    added = jm.restarts - seen if jm.restarts > seen else jm.restarts  # below: a new JobMaster counting afresh
    restarts = d.status.restarts
    update: dict[str, object] = {"in_place": restarts.in_place + added}
    if added:
        update |= {"last_reason": jm.failure or restarts.last_reason, "last_time": d.now_text}
        d.event(
            "JobRestartedInPlace",
            f"the JobMaster restarted the job in place ({jm.failure or 'a failure'})",
            warning=True,
        )
    d.update(
        restarts=restarts.model_copy(update=update),
        deployment=dep.model_copy(update={"jobmaster_restarts": jm.restarts}),
    )


def _standby_ready(d: Draft) -> int | None:
    """Standby pods ready: the JobMaster's spare slots in whole worker pods (its last answer while unreachable)."""
    jm, dep = d.facts.jobmaster, d.status.deployment
    if not jm.reachable or dep is None:
        return d.status.standby_workers if dep is not None else None
    if jm.spare_slots is None:
        return None
    return jm.spare_slots // StreamJobSpec.parse(dep.spec).task_slots


def _running_bookkeeping(d: Draft) -> Progress | None:
    """Stability, the restart count's reset and checkpoint progress of the running attempt (None otherwise)."""
    f = d.facts
    st = d.status
    dep = st.deployment
    running = st.operation is None and st.lifecycle_state.running
    if not running or dep is None or dep.running_since is None:
        return None
    spec = StreamJobSpec.parse(dep.spec)
    up = seconds_since(dep.running_since, f.now) or 0.0
    last = st.last_checkpoint
    checkpointed = last is not None and last.job_id == dep.job_id and _after(last.time, dep.started_at)
    if not dep.stable and (up >= spec.timeouts.stable_seconds or checkpointed):
        d.update(deployment=dep.model_copy(update={"stable": True}), last_stable_spec=dep.spec)
    policy = (f.valid_spec or spec).restart_policy
    if st.restarts.count and up >= policy.reset_after_seconds:
        d.update(restarts=RestartsStatus(last_reason=st.restarts.last_reason, last_time=st.restarts.last_time))
    return _checkpoint_progress(d, spec, up=up, checkpointed=checkpointed)


def _after(a: str | None, b: str | None) -> bool:
    ta, tb = parse_time(a), parse_time(b)
    return ta is not None and tb is not None and ta > tb


def _checkpoint_progress(d: Draft, spec: StreamJobSpec, *, up: float, checkpointed: bool) -> Progress:
    """Whether checkpoints stall (FKO's threshold); a Warning when they start to, a Normal Event when they resume."""
    cfg = spec.checkpoint
    last = d.status.last_checkpoint
    since = (seconds_since(last.time, d.facts.now) if checkpointed and last is not None else up) or 0.0
    if cfg.interval_ms is None:
        return Progress(stalled=False, seconds=since, threshold=None, checkpointed=checkpointed)
    threshold = max(cfg.interval_ms, cfg.timeout_ms or 600_000) / 1000 * ((cfg.tolerable_failures or 0) + 2)
    stalled = since > threshold
    old = d.status.condition("CheckpointsProgressing")
    was_stalled = old is not None and old.reason == "Stalled"
    if stalled and not was_stalled:
        d.event(
            "CheckpointsStalled",
            f"no checkpoint completed for {int(since)}s (threshold {int(threshold)}s)",
            warning=True,
        )
    elif was_stalled and not stalled:
        d.event("CheckpointsResumed", f"checkpoints complete again (last {int(since)}s ago)")
    return Progress(stalled=stalled, seconds=since, threshold=threshold, checkpointed=checkpointed)
