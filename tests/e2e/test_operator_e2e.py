"""The StreamJob operator against a real API server (the test bed), with pods run as real processes.

The operator runs as a subprocess (``streamjob-operator``) against the bed's kubeconfig; the node
agent runs the pods it creates (``streamjob jobmaster`` / ``streamjob worker``) as local processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Kube
from tests.cluster.kubeapi import KubeError
from tests.cluster.node_agent import NodeAgent
from tests.e2e import E2E_OPERATOR_KEY

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
GROUP_PATH = "/apis/streamjob.dev/v1alpha1"


def sj_path(namespace: str, name: str = "") -> str:
    base = f"{GROUP_PATH}/namespaces/{namespace}/streamjobs"
    return f"{base}/{name}" if name else base


def install_crd(kube: Kube) -> None:
    kube.apply(CRD_FILE.read_text())

    def established() -> bool:
        got = kube.raw.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/streamjobs.streamjob.dev")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (got.get("status") or {}).get("conditions") or []
        )

    kube.wait_for(established, 30, "the StreamJob CRD to be established")
    kube.wait_for(lambda: kube.raw.get(f"{GROUP_PATH}"), 30, "the streamjob.dev API to be served")


@pytest.fixture(scope="module")
def crd(kube: Kube) -> Kube:
    install_crd(kube)
    return kube


class OperatorProcess:
    """``streamjob-operator`` as a subprocess, watching every namespace."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = Path(sys.executable).parent / "streamjob-operator"
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAMJOB_OPERATOR_KEY": E2E_OPERATOR_KEY}
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--kubeconfig",
                str(self.kubeconfig),
                "--standalone",
                "--metrics-port",
                "0",
                "--log-level",
                "INFO",
                "--poll-interval",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def operator(crd: Kube, node_agent: NodeAgent, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(crd.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"operator log: {proc.log_path}")


def streamjob(name: str, **spec: Any) -> Json:
    body: Json = {
        "image": "streamjob:e2e",
        "entrypoint": "examples.balance:build",
        "parallelism": 1,
        "storage": {"checkpointsUri": "file:///tmp/streamjob-e2e/checkpoints"},
    }
    body.update(spec)
    return {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob", "metadata": {"name": name}, "spec": body}


def status_of(kube: Kube, namespace: str, name: str) -> Json:
    return dict(kube.raw.get(sj_path(namespace, name)).get("status") or {})


def wait_status(
    kube: Kube,
    namespace: str,
    name: str,
    check: Callable[[Json], bool],
    what: str,
    op: OperatorProcess,
    timeout: float = 90.0,
) -> Json:
    try:

        def ready() -> Json | None:
            current = status_of(kube, namespace, name)
            return current if current and check(current) else None

        return kube.wait_for(ready, timeout, what)
    except AssertionError as err:
        last = status_of(kube, namespace, name)
        raise AssertionError(f"{err}\nstatus: {json.dumps(last, indent=1)[:3000]}\noperator:\n{op.tail()}") from None


def pods_of(kube: Kube, namespace: str, name: str) -> list[Json]:
    items = kube.raw.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"streamjob.dev/job={name}")
    return list(items.get("items", []))


# -- schema ----------------------------------------------------------------------------------------


def test_crd_defaults_enums_and_cel_rules(crd: Kube, kube_namespace: str) -> None:
    kube = crd
    created = kube.raw.create(sj_path(kube_namespace), streamjob("plain", state="suspended"))
    spec = created["spec"]
    assert (spec["upgradeMode"], spec["maxParallelism"], spec["taskSlots"]) == ("savepoint", 128, 1)
    bad_specs: list[tuple[Json, str]] = [
        ({"parallelism": 9, "maxParallelism": 4}, "parallelism must not exceed maxParallelism"),
        ({"parallelism": 4, "workers": 1}, "workers * taskSlots"),
        ({"upgradeMode": "savepoints"}, "upgradeMode"),
        ({"parallelism": 0}, "parallelism"),
        ({"checkpoint": {"unaligned": True, "maxConcurrent": 2}}, "unaligned checkpoints need maxConcurrent = 1"),
        ({"savepointRedeployNonce": 1}, "savepointRedeployNonce needs initialSavepointPath"),
        ({"entrypoint": "not an entrypoint"}, "entrypoint"),
    ]
    for index, (patch, message) in enumerate(bad_specs):
        with pytest.raises(KubeError) as caught:
            kube.raw.create(sj_path(kube_namespace), streamjob(f"bad-{index}", **patch))
        assert caught.value.status == 422 and message in caught.value.body, (patch, caught.value.body[:500])
    with pytest.raises(KubeError) as changed:
        kube.raw.merge_patch(sj_path(kube_namespace, "plain"), {"spec": {"maxParallelism": 64}})
    assert "maxParallelism cannot change while state is kept" in changed.value.body
    table = kube.kubectl("get", "sj", "-n", kube_namespace).stdout
    assert table.split()[:6] == ["NAME", "STATE", "PARALLELISM", "LAST", "CHECKPOINT", "RESTARTS"]


# -- lifecycle without a working job ----------------------------------------------------------------


def test_suspended_job_deploys_nothing_and_invalid_spec_is_reported(
    operator: OperatorProcess, crd: Kube, kube_namespace: str
) -> None:
    kube = crd
    kube.raw.create(sj_path(kube_namespace), streamjob("sleeper", state="suspended"))
    wait_status(
        kube, kube_namespace, "sleeper", lambda s: s.get("lifecycleState") == "Suspended", "Suspended", operator
    )
    assert pods_of(kube, kube_namespace, "sleeper") == []
    bad = streamjob("x" * 55)
    kube.raw.create(sj_path(kube_namespace), bad)
    status = wait_status(
        kube, kube_namespace, "x" * 55, lambda s: "metadata.name" in (s.get("error") or ""), "spec error", operator
    )
    assert status["error"].startswith("invalid spec: ")
    assert pods_of(kube, kube_namespace, "x" * 55) == []


def test_job_module_that_does_not_import_fails_at_once_and_deletion_completes(
    operator: OperatorProcess, crd: Kube, kube_namespace: str
) -> None:
    """A job module that cannot be imported is final: a restart runs the same image and config.

    The JobMaster says so in its termination message, so the job fails on its first attempt, whatever
    the restart policy allows (a restartable failure giving up after maxRestarts:
    ``test_operator_images.py``).
    """
    kube = crd
    job = streamjob(
        "broken",
        entrypoint="nosuch.module:build",
        restartPolicy={"maxRestarts": 2, "strategy": "fixed", "backoff": {"initialDelaySeconds": 0.5}},
    )
    kube.raw.create(sj_path(kube_namespace), job)
    status = wait_status(
        kube, kube_namespace, "broken", lambda s: s.get("lifecycleState") == "Failed", "Failed", operator, timeout=120
    )
    assert status["restarts"]["count"] == 0 and status["attempt"] == 1, status
    assert "exited with code 2" in status["error"] and "nosuch" in status["error"], status["error"]
    assert "not restarted" in status["error"], status["error"]

    def reasons() -> set[str]:
        events = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/events")["items"]
        return {e["reason"] for e in events if e["involvedObject"].get("name") == "broken"}

    kube.wait_for(lambda: {"Deploying", "JobFailed"} <= reasons(), 10, "the events")
    assert "Restarting" not in reasons()
    kube.wait_for(lambda: not pods_of(kube, kube_namespace, "broken"), 30, "failed pods to be deleted")
    kube.raw.delete(sj_path(kube_namespace, "broken"))
    kube.wait_gone(sj_path(kube_namespace, "broken"), 30)


def test_pods_are_bare_owned_and_labelled(operator: OperatorProcess, crd: Kube, kube_namespace: str) -> None:
    kube = crd
    job = streamjob("labels", entrypoint="nosuch.module:build", restartPolicy={"maxRestarts": 0})
    created = kube.raw.create(sj_path(kube_namespace), job)

    def jobmaster() -> tuple[Json, Json] | None:
        pod = next((p for p in pods_of(kube, kube_namespace, "labels") if "jobmaster" in p["metadata"]["name"]), None)
        if pod is None:
            return None
        return pod, kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/labels-config-1")

    pod, config = kube.wait_for(jobmaster, 60, "the JobMaster pod", interval=0.05)
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "streamjob"
    assert labels["app.kubernetes.io/instance"] == "labels"
    assert labels["app.kubernetes.io/component"] == "jobmaster"
    assert labels["streamjob.dev/job"] == "labels" and labels["streamjob.dev/attempt"] == "1"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("StreamJob", created["metadata"]["uid"], True)
    assert pod["spec"]["restartPolicy"] == "Never"
    rendered = json.loads(config["data"]["job.json"])
    assert rendered["restart_in_place"] is True and rendered["attempt"] == 1
    kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/services/labels-rest")
    kube.raw.delete(sj_path(kube_namespace, "labels"))
    kube.wait_gone(sj_path(kube_namespace, "labels"), 30)


def test_manifests_in_examples_are_accepted_by_the_api_server(crd: Kube, kube_namespace: str) -> None:
    for path in sorted((ROOT / "examples" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "StreamJob":
                doc["spec"]["state"] = "suspended"
                crd.kubectl("apply", "--dry-run=server", "-n", kube_namespace, "-f", "-", input=yaml.safe_dump(doc))
