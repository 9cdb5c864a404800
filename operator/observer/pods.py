"""Reads pod objects into facts: which attempt and role, running or not, and why a pod failed.

Pure: ``k8s.list_pods`` supplies the dicts, ``controller`` calls ``view_pods`` and hands the views to
``reconciler.plan``. A failure is named in words a user understands (exit code, OOMKilled,
ImagePullBackOff, evicted, deleted, never started within the timeout, its node lost). A container's
termination message is read per ``worker/protocol/termination.py``: the JobMaster's reason for failing, and
whether it is final (``PodView.final``: no restart can mend it, so the planner fails the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streamjob.operator.resources.labels import ATTEMPT_LABEL, COMPONENT_LABEL, JOBMASTER
from streamjob.operator.timeutil import parse_time
from streamjob.worker.protocol.termination import parse_message

FATAL_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


@dataclass(frozen=True)
class PodView:
    """What the operator needs to know about one pod of the job."""

    name: str
    component: str
    attempt: int
    phase: str
    ip: str | None
    running: bool
    failure: str | None
    succeeded: bool = False
    finished_at: datetime | None = None
    final: bool = False
    """Its container ended with a final failure (the termination message's marker): do not restart."""
    lost: bool = False
    """Its node stopped reporting (``node_lost``): its processes are presumed dead, and no kubelet will
    ever confirm a graceful deletion, so the pod is force-deleted (grace 0) and replaced."""
    unschedulable: str | None = None
    """Pending because the scheduler finds no node for it: the scheduler's message (``0/3 nodes are
    available: 3 Insufficient cpu.``), from the pod's ``PodScheduled`` condition; None otherwise."""

    @property
    def terminated(self) -> bool:
        """Phase Failed or Succeeded, or its node lost: every container has ended or is presumed dead."""
        return self.phase in ("Failed", "Succeeded") or self.lost

    @property
    def is_jobmaster(self) -> bool:
        """Whether this is the attempt's JobMaster."""
        return self.component == JOBMASTER


#: The longest reason taken from a termination message (a final one names the fix at its end).
MESSAGE_CHARS = 1500


def _terminated_reason(name: str, term: dict[str, Any]) -> tuple[str, bool]:
    """The failure of a terminated container, and whether its message marks it final."""
    code = term.get("exitCode")
    reason = term.get("reason") or ""
    if reason == "OOMKilled":
        return f"pod {name} was OOMKilled (exit code {code}); raise its memory limit", False
    final, said = parse_message(str(term.get("message") or ""))
    if len(said) > MESSAGE_CHARS:
        said = "..." + said[-MESSAGE_CHARS:]
    detail = f": {said}" if said else ""
    return f"pod {name} exited with code {code}{f' ({reason})' if reason else ''}{detail}", final


def _container_failure(name: str, statuses: list[dict[str, Any]]) -> tuple[str | None, bool]:
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            message = waiting.get("message") or ""
            return f"pod {name} cannot start its container: {waiting['reason']} {message}".strip(), False
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            return _terminated_reason(name, terminated)
        if (cs.get("restartCount") or 0) > 0:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            return _terminated_reason(name, last) if last else (f"pod {name} restarted its container", False)
    return None, False


def node_lost(pod: dict[str, Any]) -> str | None:
    """Why the pod's node is lost, or None: the only sign a dead node leaves on its pods.

    When a node's kubelet stops renewing its lease for the node-monitor grace period, the node
    lifecycle controller marks the node's Ready condition Unknown and sets each of its pods' Ready
    condition to False, leaving ContainersReady (which only a kubelet sets) as it was; a kubelet
    reports that pair only for unmet readiness gates, under its own reason (a container failing its
    readiness probe turns both False). Older controllers also set the pod's ``status.reason`` to
    ``NodeLost`` or its phase to ``Unknown``.
    Reading the pod alone needs no access to Node objects (no ClusterRole on nodes).
    """
    status = pod.get("status") or {}
    phase = status.get("phase")
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or phase in ("Failed", "Succeeded"):
        return None
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    containers_ready = (conditions.get("ContainersReady") or {}).get("status")
    if phase == "Unknown" or status.get("reason") == "NodeLost" or ready.get("reason") == "NodeLost":
        return f"its node {node} is lost (pod phase {phase}, reason NodeLost)"
    gated = ready.get("reason") == "ReadinessGatesNotReady"
    if ready.get("status") in ("False", "Unknown") and containers_ready == "True" and not gated:
        return f"its node {node} stopped reporting: the node controller marked the pod not ready"
    return None


def unschedulable(pod: dict[str, Any]) -> str | None:
    """The scheduler's message when it cannot place a Pending pod (``PodScheduled`` False, ``Unschedulable``)."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for condition in status.get("conditions") or []:
        placing = condition.get("type") == "PodScheduled" and condition.get("status") == "False"
        if placing and condition.get("reason") == "Unschedulable":
            return str(condition.get("message") or "no node fits the pod").strip()
    return None


def _exited_cleanly(container: str, statuses: list[dict[str, Any]]) -> bool:
    """Whether the container called ``container`` (the pod's main one) ended with exit code 0."""
    for cs in statuses:
        if cs.get("name") == container:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            return bool(terminated) and terminated.get("exitCode") == 0
    return False


def view_pod(pod: dict[str, Any], *, now: datetime, start_timeout_s: float) -> PodView:
    """Classifies one pod dict (as the API returns it)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = meta.get("labels") or {}
    name = str(meta.get("name", "?"))
    phase = str(status.get("phase") or "Pending")
    statuses = list(status.get("containerStatuses") or [])
    failure, final = _container_failure(name, statuses)
    component = str(labels.get(COMPONENT_LABEL, ""))
    # The main container's exit 0 ends the pod's part even while a template's sidecar still runs.
    succeeded = phase == "Succeeded" or (failure is None and _exited_cleanly(component, statuses))
    if phase == "Failed" and failure is None:
        reason = status.get("reason") or "Failed"
        message = status.get("message") or ""
        failure = f"pod {name} failed: {reason} {message}".strip()
    lost = node_lost(pod) if failure is None and not succeeded else None
    if lost is not None:
        failure = f"pod {name} is gone with its node: {lost}; its processes are presumed dead"
    if meta.get("deletionTimestamp") and failure is None and not succeeded:
        failure = f"pod {name} is being deleted (evicted, drained or deleted by someone)"
    created = parse_time(meta.get("creationTimestamp"))
    ready_to_run = phase == "Running" and all(((cs.get("state") or {}).get("running") is not None) for cs in statuses)
    unplaced = unschedulable(pod) if failure is None else None
    if failure is None and phase == "Pending" and created is not None:
        waited = (now - created).total_seconds()
        if waited > start_timeout_s:
            why = f"the scheduler finds no node for it: {unplaced}" if unplaced else "still Pending"
            failure = f"pod {name} did not start within {int(start_timeout_s)}s ({why})"
    try:
        attempt = int(labels.get(ATTEMPT_LABEL, "-1"))
    except ValueError:
        attempt = -1
    ended = [parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")) for cs in statuses]
    finished_at = max((t for t in ended if t is not None), default=None)
    return PodView(
        finished_at=finished_at,
        name=name,
        component=component,
        attempt=attempt,
        phase=phase,
        ip=status.get("podIP") or None,
        running=ready_to_run and failure is None,
        failure=failure,
        succeeded=succeeded,
        final=final,
        lost=lost is not None,
        unschedulable=unplaced,
    )


def view_pods(pods: list[dict[str, Any]], *, now: datetime, start_timeout_s: float) -> list[PodView]:
    """Classifies every pod of the job."""
    return [view_pod(p, now=now, start_timeout_s=start_timeout_s) for p in pods]
