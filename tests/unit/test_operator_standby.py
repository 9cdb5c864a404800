"""Standby workers (``spec.standbyWorkers``): extra worker pods whose slots idle as the JobMaster's spares.

Flink's redundant TaskManagers: the operator runs ``workers + standbyWorkers`` worker pods, the slots
registering after the attempt has all of its own stay spares, and a worker failure is redeployed onto
them at once (``worker/jobmaster``); the operator then replaces the crashed pod, which becomes the next
spare. Planner decisions against the fake world, the pod builder, validation and the CRD: no mocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamjob.operator.model import LifecycleState, StreamJobSpec
from streamjob.operator.reconciler.facts import DeleteWorkers, DeployAttempt, ReplaceWorkers
from streamjob.operator.resources import build_worker_pods
from streamjob.operator.resources.configmap import Attempt, render_job_config
from streamjob.operator.resources.labels import JobRef
from streamjob.operator.testing import PlannerWorld as World
from streamjob.operator.validation import parse_spec

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "standbyWorkers": 1,
    "storage": {"checkpointsUri": "s3://b/c"},
    "checkpoint": {"intervalMs": 1000},
    "restartPolicy": {"maxRestarts": 5, "backoff": {"initialDelaySeconds": 1, "maxDelaySeconds": 4}},
}


def workers(w: World) -> list[str]:
    return sorted(n for n, p in w.pods.items() if p.component == "worker")


def running(w: World) -> bool:
    pods = list(w.pods.values())
    return (
        w.status.lifecycle_state is LifecycleState.RUNNING
        and w.status.operation is None
        and all(p.phase == "Running" and p.failure is None for p in pods)
    )


def crash(w: World, name: str) -> None:
    pod = w.pods[name]
    pod.phase, pod.failure, pod.finished_at = "Failed", f"pod {name} exited with code 137", w.now


def test_the_attempt_runs_workers_plus_standby_pods_and_status_counts_the_ready_spares() -> None:
    w = World(dict(BASE))
    w.run_until(running)
    assert workers(w) == ["demo-worker-1-0", "demo-worker-1-1", "demo-worker-1-2"]
    assert w.status.standby_workers == 1
    dep = w.status.deployment
    assert dep is not None and dep.spec["standbyWorkers"] == 1


def test_without_standby_the_pods_are_the_workers_and_status_says_zero() -> None:
    w = World({**BASE, "standbyWorkers": 0})
    w.run_until(running)
    assert workers(w) == ["demo-worker-1-0", "demo-worker-1-1"]
    assert w.status.standby_workers == 0
    assert StreamJobSpec.parse({k: v for k, v in BASE.items() if k != "standbyWorkers"}).standby_workers == 0


def test_a_crash_replaces_only_the_pod_and_a_standby_pod_is_there_again_each_time() -> None:
    w = World(dict(BASE))
    w.run_until(running)
    jobmaster = w.pods["demo-jobmaster-1"]
    for n in range(3):
        victim = workers(w)[n % 3]
        crash(w, victim)
        w.step()
        action = [a for a in w.actions if isinstance(a, ReplaceWorkers)][n]
        assert action.delete == (victim,) and len(action.create) == 1, action
        w.run_until(lambda w: running(w) and w.status.standby_workers == 1, steps=10)
        assert len(workers(w)) == 3 and victim not in w.pods
    assert w.pods["demo-jobmaster-1"] is jobmaster and w.count(DeployAttempt) == 1
    assert w.status.restarts.count == 0 and w.status.attempt == 1


def test_a_missing_standby_pod_is_an_attempt_failure_like_any_worker_pod() -> None:
    w = World(dict(BASE))
    w.run_until(running)
    del w.pods["demo-worker-1-2"]
    w.run_until(lambda w: w.count(DeployAttempt) == 2)
    assert w.status.restarts.count == 1
    assert w.status.last_failure is not None and "1 of 4 pods of attempt 1 disappeared" in w.status.last_failure.summary


def test_the_pod_builder_makes_standby_pods_identical_workers() -> None:
    spec = StreamJobSpec.parse({**BASE, "parallelism": 3, "taskSlots": 2, "standbyWorkers": 2})
    assert spec.worker_count == 2 and spec.worker_pods == 4
    at = Attempt(JobRef("demo", "ns", "uid"), spec, attempt=1, job_id="0" * 32)
    pods = build_worker_pods(at, "10.0.0.1")
    assert [p["metadata"]["name"] for p in pods] == [f"demo-worker-1-{i}" for i in range(4)]
    commands = {tuple(p["spec"]["containers"][0]["command"]) for p in pods}
    assert commands == {("streamjob", "worker", "--jobmaster", "10.0.0.1:6123", "--slots", "2")}
    # The JobMaster needs the task slots only: its workers are the spec's workers, the spares come on their own.
    assert render_job_config(at).workers == 2


@pytest.mark.parametrize("value", [-1, 101, "one"])
def test_a_bad_standby_count_is_one_line_naming_the_field(value: object) -> None:
    spec, problems = parse_spec({**BASE, "standbyWorkers": value})
    assert spec is None and len(problems) == 1, problems
    assert problems[0].startswith("spec.standbyWorkers: "), problems
    assert "\n" not in problems[0]


def test_the_crd_bounds_standby_workers_and_reports_them_in_status() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "streamjob.dev_streamjobs.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    field = schema["spec"]["properties"]["standbyWorkers"]
    assert (field["type"], field["minimum"], field["maximum"], field["default"]) == ("integer", 0, 100, 0)
    assert schema["status"]["properties"]["standbyWorkers"]["type"] == "integer"


def test_changing_standby_workers_redeploys_with_the_new_count() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and bool(w.checkpoints.get("job01")))
    w.update_spec(standbyWorkers=2)
    w.run_until(lambda w: running(w) and w.status.attempt == 2)
    assert workers(w) == [f"demo-worker-2-{i}" for i in range(4)]
    assert w.status.standby_workers == 2


def test_a_rescale_in_place_keeps_the_standby_pods() -> None:
    w = World(dict(BASE))
    w.run_until(lambda w: running(w) and bool(w.checkpoints.get("job01")))
    w.update_spec(parallelism=3)  # one more pod: 3 task slots + 1 spare
    w.run_until(lambda w: running(w) and w.status.parallelism == 3)
    assert len(workers(w)) == 4 and w.status.attempt == 1 and w.status.standby_workers == 1
    w.update_spec(parallelism=1)  # the JobMaster lets two slots go; the spare stays
    w.run_until(lambda w: running(w) and w.status.parallelism == 1)
    [delete] = [a for a in w.actions if isinstance(a, DeleteWorkers)]
    assert len(delete.names) == 2
    assert len(workers(w)) == 2 and w.status.attempt == 1 and w.status.standby_workers == 1
    assert len(w.deployed) == 1 and not w.warnings


def test_status_keeps_the_last_count_while_the_jobmaster_does_not_answer() -> None:
    w = World(dict(BASE))
    w.run_until(running)
    w.jm_answers = False
    for _ in range(3):
        w.step()
        assert w.status.standby_workers == 1 and w.status.attempt == 1
    w.jm_answers = True
    w.jm_registers = False  # a JobMaster that does not report its slots: no count rather than a wrong one
    w.step()
    assert w.status.standby_workers is None
