from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamjob.operator.observer.pods import view_pod
from streamjob.operator.testing import pod_object

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(phase: str = "Running", statuses: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return pod_object("worker", phase, name="j-worker-1-0", containers=statuses, podIP="10.0.0.5", **status)


def running() -> list[dict[str, Any]]:
    return [{"name": "worker", "state": {"running": {}}, "restartCount": 0}]


def test_running_pod() -> None:
    view = view_pod(pod(statuses=running()), now=NOW, start_timeout_s=120)
    assert view.running and view.failure is None and view.attempt == 1 and view.ip == "10.0.0.5"


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        ("ImagePullBackOff", "ImagePullBackOff"),
        ("ErrImagePull", "ErrImagePull"),
        ("CreateContainerConfigError", "CreateContainerConfigError"),
    ],
)
def test_fatal_waiting_reasons_fail_at_once(waiting: str, expected: str) -> None:
    statuses = [{"name": "worker", "state": {"waiting": {"reason": waiting, "message": "boom"}}}]
    view = view_pod(pod("Pending", statuses), now=NOW, start_timeout_s=120)
    assert view.failure is not None and expected in view.failure and not view.running


def test_oom_killed_is_named() -> None:
    statuses = [{"name": "worker", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    view = view_pod(pod("Failed", statuses), now=NOW, start_timeout_s=120)
    assert view.failure is not None and "OOMKilled" in view.failure and "memory" in view.failure


def test_exit_code_and_eviction() -> None:
    statuses = [{"name": "worker", "state": {"terminated": {"exitCode": 3, "message": "storage down"}}}]
    assert "exited with code 3: storage down" in (
        view_pod(pod("Failed", statuses), now=NOW, start_timeout_s=9).failure or ""
    )
    evicted = view_pod(pod("Failed", reason="Evicted", message="node low on memory"), now=NOW, start_timeout_s=9)
    assert evicted.failure == "pod j-worker-1-0 failed: Evicted node low on memory"


def test_pending_too_long_fails_but_not_before() -> None:
    assert view_pod(pod("Pending"), now=NOW, start_timeout_s=120).failure is None
    late = view_pod(pod("Pending"), now=NOW, start_timeout_s=30)
    assert late.failure is not None and "did not start within 30s" in late.failure


def test_deleted_pod_is_a_failure_and_succeeded_is_not() -> None:
    gone = pod(statuses=running())
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:59Z"
    assert "being deleted" in (view_pod(gone, now=NOW, start_timeout_s=9).failure or "")
    done = view_pod(
        pod("Succeeded", [{"name": "w", "state": {"terminated": {"exitCode": 0}}}]), now=NOW, start_timeout_s=9
    )
    assert done.succeeded and done.failure is None


def test_main_container_exiting_cleanly_ends_the_pods_part_while_a_sidecar_runs() -> None:
    sidecar = {"name": "log-agent", "state": {"running": {}}, "restartCount": 0}
    done = {"name": "worker", "state": {"terminated": {"exitCode": 0}}, "restartCount": 0}
    view = view_pod(pod("Running", [done, sidecar]), now=NOW, start_timeout_s=120)
    assert view.succeeded and view.failure is None and not view.running
    # A sidecar exiting cleanly is not the pod's end; the main container still runs.
    still = view_pod(pod("Running", [*running(), {**sidecar, "state": {"terminated": {"exitCode": 0}}}]), now=NOW,
                     start_timeout_s=120)  # fmt: skip
    assert not still.succeeded
    crashed = {"name": "worker", "state": {"terminated": {"exitCode": 2}}, "restartCount": 0}
    failed = view_pod(pod("Running", [crashed, sidecar]), now=NOW, start_timeout_s=120)
    assert not failed.succeeded and failed.failure is not None


def on_node(obj: dict[str, Any], ready: str, containers_ready: str | None, node: str = "127.0.0.3") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready}]
    if containers_ready is not None:
        conditions.append({"type": "ContainersReady", "status": containers_ready})
    obj["spec"] = {"nodeName": node}
    obj["status"]["conditions"] = conditions
    return obj


def test_a_pod_the_node_controller_marked_not_ready_is_lost_with_its_node() -> None:
    """The node lifecycle controller flips only Ready; ContainersReady (the kubelet's) stays True."""
    view = view_pod(on_node(pod(statuses=running()), "False", "True"), now=NOW, start_timeout_s=120)
    assert view.lost and view.terminated and not view.running
    assert view.failure is not None and "node 127.0.0.3" in view.failure and "j-worker-1-0" in view.failure
    unknown = view_pod(on_node(pod(statuses=running()), "Unknown", "True"), now=NOW, start_timeout_s=120)
    assert unknown.lost


@pytest.mark.parametrize(
    ("phase", "status"),
    [("Unknown", {}), ("Running", {"reason": "NodeLost", "message": "Node 127.0.0.3 is unresponsive"})],
)
def test_older_controllers_signs_of_a_lost_node_count_too(phase: str, status: dict[str, Any]) -> None:
    obj = pod(phase, statuses=running(), **status)
    obj["spec"] = {"nodeName": "127.0.0.3"}
    assert view_pod(obj, now=NOW, start_timeout_s=120).lost


def test_a_kubelet_reporting_a_container_not_ready_is_not_a_lost_node() -> None:
    # A failing readiness probe: the kubelet turns both conditions False; the pod is merely not ready.
    probe = view_pod(on_node(pod(statuses=running()), "False", "False"), now=NOW, start_timeout_s=120)
    assert not probe.lost and probe.failure is None
    # Ready, no conditions yet, not scheduled, or already ended: never lost.
    assert not view_pod(on_node(pod(statuses=running()), "True", "True"), now=NOW, start_timeout_s=120).lost
    assert not view_pod(on_node(pod(statuses=running()), "False", None), now=NOW, start_timeout_s=120).lost
    gated = on_node(pod(statuses=running()), "False", "True")
    gated["status"]["conditions"][0]["reason"] = "ReadinessGatesNotReady"  # the kubelet's, for a pod's gates
    assert not view_pod(gated, now=NOW, start_timeout_s=120).lost
    unscheduled = on_node(pod("Pending"), "False", "True")
    unscheduled["spec"] = {}
    assert not view_pod(unscheduled, now=NOW, start_timeout_s=120).lost
    failed = on_node(
        pod("Failed", statuses=[{"name": "worker", "state": {"terminated": {"exitCode": 137}}}]), "False", "True"
    )
    ended = view_pod(failed, now=NOW, start_timeout_s=120)
    assert not ended.lost and ended.failure is not None and "exited with code 137" in ended.failure


def _unschedulable(message: str) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return pod("Pending", conditions=[condition])


def test_a_pod_the_scheduler_cannot_place_says_why_at_once_and_in_its_timeout_failure() -> None:
    message = "0/3 nodes are available: 3 Insufficient cpu."
    early = view_pod(_unschedulable(message), now=NOW, start_timeout_s=120)
    assert early.unschedulable == message and early.failure is None and not early.running
    late = view_pod(_unschedulable(message), now=NOW, start_timeout_s=30)
    assert late.failure is not None and f"the scheduler finds no node for it: {message}" in late.failure
    placed = pod("Pending", conditions=[{"type": "PodScheduled", "status": "True"}])
    assert view_pod(placed, now=NOW, start_timeout_s=120).unschedulable is None
    assert view_pod(pod(statuses=running()), now=NOW, start_timeout_s=120).unschedulable is None
