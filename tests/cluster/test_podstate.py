"""Unit tests of the node agent's pod status building (``tests/cluster/podstate.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster import podspec
from tests.cluster.podstate import Container, PodRun, init_progress, pod_phase, pod_status

pytestmark = pytest.mark.unit


def container(name: str, *, init: bool = False, spec: dict[str, Any] | None = None) -> Container:
    return Container(
        name=name,
        spec={"name": name, **(spec or {})},
        log_path=Path("/nonexistent"),
        termination_file=Path("/nonexistent"),
        state=podspec.waiting_state("ContainerCreating", ""),
        init=init,
    )


def finish(item: Container, code: int) -> None:
    item.state = podspec.terminated_state(code, "t0", "t1", "testbed://1")
    item.done = True


def run_of(inits: list[Container], mains: list[Container]) -> PodRun:
    return PodRun(
        uid="u",
        namespace="ns",
        name="p",
        ip="127.1.0.1",
        pod_dir=Path("/nonexistent"),
        pod={"spec": {}},
        init_containers=inits,
        containers=mains,
        start_time="t0",
    )


def test_phase_follows_main_containers() -> None:
    main = container("main")
    run = run_of([], [main])
    assert pod_phase(run) == "Pending"
    finish(main, 0)
    assert pod_phase(run) == "Succeeded"
    finish(main, 3)
    assert pod_phase(run) == "Failed"
    status = pod_status(run)
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_init_containers_gate_the_main_ones() -> None:
    first, second, main = container("a", init=True), container("b", init=True), container("main")
    run = run_of([first, second], [main])
    assert init_progress(run) == (False, first, False)
    finish(first, 0)
    assert init_progress(run) == (False, second, False)
    finish(second, 1)
    assert init_progress(run) == (False, None, True)
    assert pod_phase(run) == "Failed"
    assert [s["name"] for s in pod_status(run)["initContainerStatuses"]] == ["a", "b"]


def test_sidecar_counts_as_started_once_restarted() -> None:
    sidecar = container("proxy", init=True, spec={"restartPolicy": "Always"})
    run = run_of([sidecar], [container("main")])
    assert sidecar.sidecar and sidecar.restart_policy("Never") == "Always"
    assert init_progress(run) == (False, sidecar, False)
    sidecar.restart_count = 1
    assert init_progress(run)[0] is True
