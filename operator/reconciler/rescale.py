"""A parallelism-only change rescales the running job in place, its JobMaster kept alive (pure).

``kubectl scale sj/x --replicas=N`` (the scale subresource) or a spec change touching only
``parallelism``/``workers`` of a Running job with a reachable, healthy JobMaster becomes a RESCALE
operation on the same attempt (``worker/jobmaster/rescale.py`` does the JobMaster's part):

- DEPLOY (scale up): create the extra worker pods of the attempt and wait until they run and their
  slots registered (``GET /job``: ``workers`` plus ``spare_slots``);
- SNAPSHOT: ``POST /rescale {"parallelism": N}`` and follow ``GET /job``'s ``rescale`` until the JobMaster
  took its stop-with-savepoint and runs the next attempt at N;
- TEARDOWN (scale down): delete the surplus worker pods (those whose slots the JobMaster let go ended
  first) and wait until they are gone;
- then the deployment's recorded spec, ``status.parallelism`` and an Event ``Rescaled`` (from → to,
  the gap) say what runs.

Anything else — another field changed too, the job not Running healthy, the JobMaster unreachable, a
rescale that fails or times out — falls back to the full upgrade path with an Event
``RescaleFallback`` saying why. Called by ``reconciler.plan`` (start) and ``reconciler.operations``
(advance).
"""

from __future__ import annotations

import re

from streamjob.operator.diff import SpecChange
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import Deployment, Operation, OperationKind, OperationStep
from streamjob.operator.observer.pods import PodView
from streamjob.operator.reconciler import operation_starts as ops
from streamjob.operator.reconciler.facts import DeleteWorkers, Draft, ReplaceWorkers, RescaleJob
from streamjob.operator.reconciler.restore_steps import set_step, target
from streamjob.operator.resources.configmap import Attempt
from streamjob.operator.resources.labels import JobRef, worker_pod_name
from streamjob.operator.timeutil import parse_time, seconds_since
from streamjob.worker.protocol.rest import JobState, RescaleStatus

IN_PLACE_FIELDS = frozenset({"parallelism", "workers"})
"""What a rescale in place may change (``taskSlots`` changes the worker pods' command: an upgrade)."""

CLOCK_SLACK_S = 30.0
"""How much earlier than the operation the JobMaster's clock may date the rescale it reports as ours."""

FALLBACK = "RescaleFallback"


def in_place_refusal(d: Draft, change: SpecChange) -> str | None:
    """Why this parallelism change cannot be done in place (None: it can)."""
    st = d.status
    other = sorted(_user_name(f) for f in set(change.fields) - IN_PLACE_FIELDS)
    if other:
        return f"{', '.join(other)} changed too"
    dep = st.deployment
    if dep is None or not st.lifecycle_state.running:
        return f"the job is {st.lifecycle_state.value}, not Running"
    jm = d.facts.jobmaster
    if not jm.reachable:
        return f"the JobMaster is unreachable ({jm.error or 'no answer'})"
    if jm.state is not JobState.RUNNING:
        return f"the JobMaster reports the job {jm.state}"
    if ops.jobmaster_ip(d) is None or not ops.healthy(d):
        return "not every pod of the attempt is Running"
    return None


def _user_name(field: str) -> str:
    """A spec field as the user writes it (``task_slots`` → ``taskSlots``)."""
    info = StreamJobSpec.model_fields.get(field)
    return (info.alias if info is not None and info.alias else None) or field


def start(d: Draft, spec: StreamJobSpec, *, generation: int, change: SpecChange) -> None:
    """Starts the rescale in place, or the full upgrade (with the reason) when it cannot be done in place."""
    dep = d.status.deployment
    source = StreamJobSpec.parse(dep.spec).parallelism if dep is not None else None
    what = f"parallelism {source} → {spec.parallelism}"
    refusal = in_place_refusal(d, change)
    if refusal is not None or dep is None:
        d.event(FALLBACK, f"{what}: {refusal}; rescaling through a full upgrade", warning=True)
        ops.start_upgrade(d, spec, generation=generation, reason=f"rescale: {change.describe()}")
        return
    step = OperationStep.DEPLOY if _missing_workers(d, dep, spec) or _slots_short(d, spec) else OperationStep.SNAPSHOT
    op = Operation(
        kind=OperationKind.RESCALE,
        step=step,
        target_spec=spec.wire(),
        target_generation=generation,
        job_id=dep.job_id,
        attempt=dep.attempt,
        restore_from=dep.restore_from,
        restore_mode="none",
        intent="carry",
        started_at=d.now_text,
        step_started_at=d.now_text,
        reason=f"rescale in place: {what}",
    )
    d.update(operation=op, lifecycle_state=ops.LIFECYCLE_OF[OperationKind.RESCALE], held=None)
    d.event("Rescaling", f"{what} in place: the JobMaster stays, the state goes through a savepoint")
    advance(d)  # the controller writes the operation to status before it acts


def advance(d: Draft) -> None:
    """Moves the rescale forward as far as the facts allow this round."""
    op, dep = d.status.operation, d.status.deployment
    assert op is not None
    if dep is None or dep.attempt != op.attempt:
        _fallback(d, "the attempt it was rescaling ended")
        return
    {
        OperationStep.DEPLOY: _add_workers,
        OperationStep.SNAPSHOT: _rescale,
        OperationStep.TEARDOWN: _remove_workers,
    }.get(op.step, _rescale)(d, dep)


def _elapsed(d: Draft) -> float:
    op = d.status.operation
    assert op is not None
    return seconds_since(op.step_started_at, d.facts.now) or 0.0


def _workers(d: Draft, dep: Deployment) -> list[PodView]:
    """The attempt's worker pods that may still run (not ended)."""
    return [p for p in d.facts.pods_of(dep.attempt) if not p.is_jobmaster and not p.terminated]


def _missing_workers(d: Draft, dep: Deployment, spec: StreamJobSpec) -> int:
    return max(0, spec.worker_pods - len(_workers(d, dep)))


def _slots_short(d: Draft, spec: StreamJobSpec) -> bool:
    """The JobMaster reports fewer registered slots than the new parallelism needs."""
    registered = d.facts.jobmaster.registered_slots
    return registered is not None and registered < spec.parallelism


def _add_workers(d: Draft, dep: Deployment) -> None:
    spec = target(d)
    missing = _missing_workers(d, dep, spec)
    if missing:
        ip = ops.jobmaster_ip(d)
        if ip is None:
            _fallback(d, "the JobMaster pod has no IP")
            return
        names = new_worker_names(d.facts.job, dep.attempt, [p.name for p in d.facts.pods_of(dep.attempt)], missing)
        attempt = Attempt(d.facts.job, spec, dep.attempt, dep.job_id, dep.restore_from)
        d.act(ReplaceWorkers(attempt, ip, (), tuple(names)))
        return
    if all(p.running for p in _workers(d, dep)) and not _slots_short(d, spec):
        set_step(d, OperationStep.SNAPSHOT)
        _rescale(d, dep)
    elif _elapsed(d) > spec.timeouts.pod_start_seconds:
        _fallback(d, f"the new worker pods did not run and register within {spec.timeouts.pod_start_seconds}s")


def _ours(d: Draft, op: Operation, parallelism: int) -> bool:
    """``GET /job``'s rescale is the one this operation asked for."""
    view = d.facts.jobmaster.rescale
    began = parse_time(op.started_at)
    return (
        view is not None
        and view.target == parallelism
        and began is not None
        and view.requested_at >= began.timestamp() - CLOCK_SLACK_S
    )


def _rescale(d: Draft, dep: Deployment) -> None:
    op = d.status.operation
    assert op is not None
    spec = target(d)
    jm = d.facts.jobmaster
    timeout = spec.timeouts.savepoint_seconds
    if not jm.reachable:
        if _elapsed(d) > timeout:
            _fallback(d, f"the JobMaster did not answer for {timeout}s ({jm.error})")
        return
    view = jm.rescale
    if _ours(d, op, spec.parallelism) and view is not None:
        if view.status is RescaleStatus.FAILED:
            _fallback(d, f"the JobMaster's rescale failed: {view.reason}")
        elif view.status is RescaleStatus.COMPLETED:
            _rescaled(d, dep, spec)
        elif _elapsed(d) > timeout:
            _fallback(d, f"the rescale did not complete within {timeout}s")
        return
    if jm.parallelism == spec.parallelism and jm.state is JobState.RUNNING:
        _rescaled(d, dep, spec)  # already at it (a rescale of an earlier round whose report was replaced)
        return
    if _elapsed(d) > timeout:
        _fallback(d, f"the JobMaster did not take the rescale within {timeout}s")
        return
    ip = ops.jobmaster_ip(d)
    if ip is not None and jm.state is JobState.RUNNING:
        d.act(RescaleJob(jobmaster_ip=ip, parallelism=spec.parallelism))


def _rescaled(d: Draft, dep: Deployment, spec: StreamJobSpec) -> None:
    """The JobMaster runs at the new parallelism: remove surplus workers, or finish."""
    if len(_workers(d, dep)) > spec.worker_pods or _leaving(d, dep):
        set_step(d, OperationStep.TEARDOWN)
        _remove_workers(d, dep)
    else:
        _finish(d, dep, spec)


def _leaving(d: Draft, dep: Deployment) -> list[PodView]:
    """Worker pods of the attempt that ended (their slots were let go) and are not gone yet."""
    return [p for p in d.facts.pods_of(dep.attempt) if not p.is_jobmaster and p.terminated]


def surplus_workers(workers: list[PodView], keep: int) -> list[PodView]:
    """The worker pods to delete for ``keep`` to stay: ended ones first, then the newest names."""
    ended = [p for p in workers if p.terminated]
    live = sorted((p for p in workers if not p.terminated), key=lambda p: _index(p.name))
    extra = max(0, len(live) - keep)
    return ended + (live[-extra:] if extra else [])


def _remove_workers(d: Draft, dep: Deployment) -> None:
    spec = target(d)
    workers = [p for p in d.facts.pods_of(dep.attempt) if not p.is_jobmaster]
    doomed = surplus_workers(workers, spec.worker_pods)
    if doomed:
        d.act(DeleteWorkers(tuple(p.name for p in doomed)))
        if _elapsed(d) <= spec.timeouts.pod_start_seconds:
            return  # finished once they are gone: an ended pod still listed would read as a job failure
    _finish(d, dep, spec)


def _finish(d: Draft, dep: Deployment, spec: StreamJobSpec) -> None:
    op = d.status.operation
    assert op is not None
    source = StreamJobSpec.parse(dep.spec).parallelism
    view = d.facts.jobmaster.rescale
    wire = spec.wire()
    new_dep = dep.model_copy(update={"spec": wire, "generation": op.target_generation})
    d.update(
        operation=None,
        deployment=new_dep,
        lifecycle_state=dep.running_state,
        parallelism=spec.parallelism,
        error=None,
    )
    if dep.stable and not dep.rolled_back:
        d.update(last_stable_spec=wire)
    gap = f"; processing gap {view.gap_ms} ms" if view is not None and view.gap_ms is not None else ""
    through = f" through savepoint {view.savepoint}" if view is not None and view.savepoint else ""
    d.event("Rescaled", f"rescaled from {source} to {spec.parallelism} in place{through}{gap}")


def _fallback(d: Draft, reason: str) -> None:
    """Gives the rescale in place up and upgrades instead (the job's state then goes through the usual path)."""
    op, dep = d.status.operation, d.status.deployment
    assert op is not None and op.target_spec is not None
    spec = StreamJobSpec.parse(op.target_spec)
    state = dep.running_state if dep is not None else d.status.lifecycle_state
    d.update(operation=None, lifecycle_state=state)
    d.event(FALLBACK, f"rescale in place to {spec.parallelism} given up: {reason}; upgrading instead", warning=True)
    ops.start_upgrade(
        d,
        spec,
        generation=op.target_generation or d.facts.generation,
        reason=f"rescale: parallelism {spec.parallelism}",
    )


_INDEX = re.compile(r"-worker-\d+-(\d+)(?:-r\d+)?$")


def _index(name: str) -> int:
    match = _INDEX.search(name)
    return int(match.group(1)) if match else -1


def new_worker_names(job: JobRef, attempt: int, in_use: list[str], count: int) -> list[str]:
    """``count`` worker pod names of ``attempt`` above every index in use (never a name still held)."""
    top = max((_index(n) for n in in_use), default=-1)
    return [worker_pod_name(job, attempt, top + i) for i in range(1, count + 1)]
