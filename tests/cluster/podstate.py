"""The node agent's records of pods and containers, and the pod status they add up to.

:class:`Container` holds one container's process and reported state; :class:`PodRun` one pod's
containers (init containers first) and bookkeeping. :func:`pod_status` turns a run into the
``status`` the kubelet would report (phase, conditions, container and init-container statuses);
:func:`init_progress` says which init container runs next. Nothing here does I/O.

Callers: ``tests/cluster/node_agent.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cluster.probes import ProbeRunner

Json = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    """One container of a pod: its process and the status the agent reports for it."""

    name: str
    spec: Json
    log_path: Path
    termination_file: Path
    state: Json
    init: bool = False
    last_state: Json = field(default_factory=dict)
    proc: Any = None  # subprocess.Popen[bytes] | None
    started_at: str = ""
    restart_count: int = 0
    ready: bool = False
    next_start: float = 0.0
    done: bool = False  # terminated and will not be restarted
    readiness: ProbeRunner | None = None
    liveness: ProbeRunner | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def sidecar(self) -> bool:
        """A native sidecar: an init container with ``restartPolicy: Always``."""
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def restart_policy(self, pod_policy: str) -> str:
        """Always / OnFailure / Never for this container (init containers never restart on success)."""
        if self.sidecar:
            return "Always"
        if self.init and pod_policy == "Always":
            return "OnFailure"
        return pod_policy


@dataclass
class PodRun:
    """The agent's record of one pod (by uid), kept after the pod is gone so its logs stay readable."""

    uid: str
    namespace: str
    name: str
    ip: str
    pod_dir: Path
    pod: Json
    init_containers: list[Container]
    containers: list[Container]
    start_time: str
    volumes_ready: bool = False
    kill_deadline: float | None = None
    gone: bool = False
    reported: Json = field(default_factory=dict)
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def every(self) -> list[Container]:
        return [*self.init_containers, *self.containers]


def init_progress(run: PodRun) -> tuple[bool, Container | None, bool]:
    """(initialized, the init container to start or watch next, an init container failed for good)."""
    for item in run.init_containers:
        if item.sidecar:
            if item.running or item.restart_count:
                continue
            return False, item, False
        if item.done:
            if item.exit_code == 0:
                continue
            return False, None, True
        return False, item, False
    return True, None, False


def pod_phase(run: PodRun) -> str:
    initialized, _, init_failed = init_progress(run)
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    items = run.containers
    if items and all(item.done for item in items):
        return "Failed" if any(item.exit_code != 0 for item in items) else "Succeeded"
    if any(item.running or item.restart_count or item.done for item in items):
        return "Running"
    return "Pending"


def _condition(run: PodRun, kind: str, ok: bool, reason: str = "") -> Json:
    status = "True" if ok else "False"
    previous = run.transitions.get(kind)
    if previous is None or previous[0] != status:
        run.transitions[kind] = (status, now_rfc3339())
    condition: Json = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": run.transitions[kind][1],
    }
    if reason and not ok:
        condition["reason"] = reason
    return condition


def _container_status(item: Container) -> Json:
    entry: Json = {
        "name": item.name,
        "image": item.spec.get("image", ""),
        "imageID": "",
        "ready": item.ready,
        "started": item.running,
        "restartCount": item.restart_count,
        "state": item.state,
    }
    if item.proc is not None:
        entry["containerID"] = f"testbed://{item.proc.pid}"
    elif "terminated" in item.state:
        entry["containerID"] = item.state["terminated"]["containerID"]
    if item.last_state:
        entry["lastState"] = item.last_state
    return entry


def pod_status(run: PodRun) -> Json:
    """The pod's ``status`` as the kubelet would report it now."""
    phase = pod_phase(run)
    initialized, _, _ = init_progress(run)
    terminal = phase in ("Succeeded", "Failed")
    all_ready = bool(run.containers) and all(item.ready for item in run.containers) and initialized
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    conditions = [
        _condition(run, "PodReadyToStartContainers", True),
        _condition(run, "Initialized", initialized, "PodCompleted" if terminal else "ContainersNotInitialized"),
        _condition(run, "Ready", all_ready, not_ready),
        _condition(run, "ContainersReady", all_ready, not_ready),
        _condition(run, "PodScheduled", True),
    ]
    status: Json = {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": run.ip,
        "podIPs": [{"ip": run.ip}],
        "startTime": run.start_time,
        "conditions": conditions,
        "containerStatuses": [_container_status(item) for item in run.containers],
    }
    if run.init_containers:
        status["initContainerStatuses"] = [_container_status(item) for item in run.init_containers]
    return status
