"""The StreamJob's conditions, derived in every state from the status just planned (pure).

- ``Ready``: the job processes records — Running or RolledBack, with no operation in flight; False
  in every other state (a Failed, Suspended or Upgrading job is not ready), with the state as reason,
  and False (``Restarting``) while the JobMaster restarts the job in place after a worker failed.
- ``Stable``: the running attempt ran ``timeouts.stableSeconds`` or completed a checkpoint; False
  while it has not (``NotYetStable``) and in every state where no attempt runs.
- ``CheckpointsProgressing``: checkpoints complete within max(interval, timeout) × (tolerable
  failures + 2) (FKO's health check); False when they stall (``Stalled``) and whenever no attempt runs
  (the state as reason); Unknown (``NoInterval``) before the first checkpoint when the spec names no
  interval (the job's code may set one), since then no stall can be told.
- ``PodsScheduled``: False (``Unschedulable``) as soon as a pod of the job waits for a node the
  scheduler cannot find, with the scheduler's own message (``0/3 nodes are available: 3 Insufficient
  cpu``) — seconds after the pod is created, not at ``timeouts.podStartSeconds``; True
  (``Scheduled``) once every pod is placed; False with the state as reason when the job has no pod.

``plan._bookkeeping`` calls ``apply`` last in every round, after the checkpoint progress was
measured (``Progress``; None when no attempt runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamjob.operator.reconciler.facts import Draft
from streamjob.worker.protocol.rest import JobState


@dataclass(frozen=True)
class Progress:
    """Checkpoint progress of the running attempt: stalled or not, and since when."""

    stalled: bool
    seconds: float
    threshold: float | None
    """None: the spec names no checkpoint interval (the job's code may set one), so stalls are not detected."""
    checkpointed: bool


def apply(d: Draft, progress: Progress | None) -> None:
    """Sets Ready, Stable, CheckpointsProgressing and PodsScheduled to what the status says now."""
    _pods_scheduled(d)
    st = d.status
    state = st.lifecycle_state
    dep = st.deployment
    up = st.operation is None and state.running and dep is not None
    jm = d.facts.jobmaster
    recovering = jm.reachable and jm.state in (JobState.RESTARTING, JobState.RECOVERING)
    if up and recovering:
        why = f"the JobMaster is restarting the job after a failure: {jm.failure or 'see status.restarts'}"
        d.condition("Ready", False, "Restarting", why)
    elif up and dep is not None:
        why = "running the last stable spec; the applied spec was rolled back" if dep.rolled_back else ""
        d.condition("Ready", True, state.value, why)
    else:
        d.condition("Ready", False, state.value, f"the job is {state.value}")
    if up and dep is not None and dep.stable:
        d.condition("Stable", True, "Stable", f"attempt {dep.attempt} is stable")
    elif up and dep is not None:
        d.condition("Stable", False, "NotYetStable", f"attempt {dep.attempt} has not yet run stably")
    else:
        d.condition("Stable", False, state.value, f"the job is {state.value}")
    if not up or progress is None:
        d.condition("CheckpointsProgressing", False, state.value, f"the job is {state.value}")
    elif progress.threshold is None and not progress.checkpointed:
        why = "no checkpoint yet and no checkpoint.intervalMs in the spec: stalls are not detected"
        d.condition("CheckpointsProgressing", None, "NoInterval", why)
    elif progress.stalled:
        d.condition(
            "CheckpointsProgressing",
            False,
            "Stalled",
            f"no checkpoint completed for {int(progress.seconds)}s (threshold {int(progress.threshold or 0)}s)",
        )
    else:
        last = f"last checkpoint {int(progress.seconds)}s ago" if progress.checkpointed else "none completed yet"
        d.condition("CheckpointsProgressing", True, "Progressing", last)


def _pods_scheduled(d: Draft) -> None:
    pods = [p for p in d.facts.pods if not p.terminated]
    waiting = [p for p in pods if p.unschedulable]
    if waiting:
        first = waiting[0]
        more = f" (and {len(waiting) - 1} more pods)" if len(waiting) > 1 else ""
        d.condition("PodsScheduled", False, "Unschedulable", f"pod {first.name}{more}: {first.unschedulable}")
    elif pods:
        d.condition("PodsScheduled", True, "Scheduled", f"{len(pods)} pods placed on nodes")
    else:
        state = d.status.lifecycle_state
        d.condition("PodsScheduled", False, state.value, f"the job has no pods ({state.value})")
