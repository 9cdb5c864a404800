"""Two operator replicas with kopf peering on the test bed: one is active, the other takes over.

The peering resources come from the chart: its ``crds/`` (kopf's ``KopfPeering`` and
``ClusterKopfPeering`` CRDs) and its ``templates/peering.yaml`` (the peering object), so these tests
prove that what the chart installs is what kopf needs.

- Two ``streamjob-operator --peering`` processes with fixed priorities: only the higher one
  reconciles; after it is SIGKILLed (no chance to withdraw from the peering) the other resumes once
  the dead replica's record expires (kopf's peering lifetime, 20 s), and goes on reconciling: it
  recovers a worker crash, with one set of pods at a time and exact results.
- The chart with ``replicas: 2``: both operator pods run, the peering object names both (by pod,
  through ``POD_ID``), one is paused; after the active pod's process is SIGKILLed the StreamJob is
  still reconciled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.cluster.node_agent import NodeAgent
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import (
    CRD_FILE,
    GROUP_PATH,
    Job,
    Json,
    OperatorProcess,
    checkpointed,
    finished,
    running,
    sj_path,
)
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamjob"
PEERING_CRDS = CHART / "crds" / "kopf.dev_peerings.yaml"
#: ``settings.peering.lifetime`` of the operator (``operator/handlers.py``).
PEERING_LIFETIME_S = 20
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


class PeeringOperator(OperatorProcess):
    """``streamjob-operator --peering NAME --priority P`` watching one namespace, named ``identity``."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, peering: str, priority: int, namespace: str) -> None:
        super().__init__(kubeconfig, log_path)
        self.peering, self.priority, self.namespace = peering, priority, namespace
        self.identity = log_path.stem

    def start(self) -> None:
        binary = Path(sys.executable).parent / "streamjob-operator"
        args = [
            str(binary), "--kubeconfig", str(self.kubeconfig), "--peering", self.peering,
            "--priority", str(self.priority), "--namespace", self.namespace, "--metrics-port", "0",
            "--poll-interval", "1",
        ]  # fmt: skip
        # These replicas list storage with the credentials the job names (rbac.readJobSecrets' path).
        env = {
            **os.environ, "PYTHONUNBUFFERED": "1", "POD_ID": self.identity, **self.env,
            "STREAMJOB_READ_JOB_SECRETS": "true",
        }  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def active(log: str) -> bool:
    """Whether kopf's log says the operator is processing (resumed and not paused again since).

    A replica starts paused until it has read the peering object; one that finds a live replica
    of higher priority there stays paused without a word, so a standby's log may hold neither line.
    """
    return RESUMED in log and log.rfind(RESUMED) > log.rfind(PAUSED)


def peering_path(namespace: str, name: str) -> str:
    return f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}"


def peers(kube: Kube, namespace: str, name: str) -> dict[str, Json]:
    """The replicas recorded in the peering object: identity -> {priority, lastseen, lifetime}."""
    return dict(kube.raw.get(peering_path(namespace, name)).get("status") or {})


def install_peering_from_chart(kube: Kube, helm: Helm, namespace: str, name: str) -> None:
    """Applies the chart's kopf CRDs and renders its peering template for ``namespace``."""
    kube.apply(PEERING_CRDS.read_text())
    kube.wait_for(lambda: kube.raw.get("/apis/kopf.dev/v1"), 30, "the kopf.dev API")
    rendered = helm.run(
        "template", "sj", str(CHART), "--show-only", "templates/peering.yaml",
        "--set", f"watchNamespaces={{{namespace}}}", "--set", f"peering.name={name}",
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [
        ("KopfPeering", name, namespace)
    ]
    kube.apply(rendered, namespace)


def job_pod_names(node_agent: NodeAgent, namespace: str) -> list[str]:
    """The names of every pod the node agent ran in ``namespace``, once per pod object (uid)."""
    return sorted(d.name.split("_")[1] for d in node_agent.pod_dirs(namespace))


@pytest.fixture
def replicas(
    kube: Kube, helm: Helm, kube_namespace: str, node_agent: NodeAgent, tmp_path: Path
) -> Iterator[tuple[PeeringOperator, PeeringOperator]]:
    kube.apply(CRD_FILE.read_text())
    kube.wait_for(lambda: kube.raw.get(GROUP_PATH), 30, "the streamjob.dev API")
    name = f"sj-{uuid.uuid4().hex[:6]}"
    install_peering_from_chart(kube, helm, kube_namespace, name)
    high, low = (
        PeeringOperator(
            kube.kubeconfig, tmp_path / f"replica-{which}.log", peering=name, priority=p, namespace=kube_namespace
        )
        for which, p in (("high", 200), ("low", 100))
    )
    try:
        yield high, low
    finally:
        for proc in (high, low):
            proc.stop()


def test_standby_takes_over_after_the_active_replica_is_killed(
    replicas: tuple[PeeringOperator, PeeringOperator],
    kube: Kube,
    kube_namespace: str,
    node_agent: NodeAgent,
    s3: S3Endpoint,
    tmp_path: Path,
) -> None:
    high, low = replicas
    peering = high.peering
    high.start()
    kube.wait_for(lambda: high.identity in peers(kube, kube_namespace, peering), 30, "the active replica's record")
    kube.wait_for(lambda: active(high.log()), 30, "the first replica to be active")
    low.start()

    def both_recorded() -> dict[str, Json] | None:
        found = peers(kube, kube_namespace, peering)
        return found if low.identity in found else None

    recorded = kube.wait_for(both_recorded, 30, "the standby replica's record")
    assert {k: v["priority"] for k, v in recorded.items()} == {high.identity: 200, low.identity: 100}
    assert all(v["lifetime"] == PEERING_LIFETIME_S for v in recorded.values())

    out = tmp_path / "out"
    out.mkdir()
    job = Job(kube, kube_namespace, s3, out, high.log_path)
    job.create(count=14000, rate=400)
    try:
        before = job.wait(lambda s: checkpointed(s, 1), "checkpoints under the active replica")
        marker = f"{kube_namespace}/{job.name} "
        assert marker in high.log() and marker not in low.log(), "only the active replica reconciles"
        assert active(high.log()) and not active(low.log())

        high.stop(signal.SIGKILL)  # no chance to leave the peering: its record must expire
        killed = time.monotonic()
        kube.wait_for(lambda: RESUMED in low.log(), PEERING_LIFETIME_S + 15, "the standby to resume")
        takeover = time.monotonic() - killed
        assert takeover <= PEERING_LIFETIME_S + 5, f"took over after {takeover:.1f}s"
        assert marker not in low.log().split(RESUMED)[0], "the standby reconciled while paused"

        # The new active replica reconciles: a worker crash after the take-over is recovered (the JobMaster
        # stays up and the new replica replaces the crashed worker's pod).
        job.log = low.log_path
        current = job.wait(running, "the job running under the new replica")
        node_agent.crash(kube_namespace, job.pod("worker", current["attempt"], 0))
        kube.wait_for(
            lambda: re.search(rf"{re.escape(marker)}WorkerReplaced: ", low.log()), 90, "the new replica to replace it"
        )
        last = int(current["lastCheckpoint"]["id"])
        after = job.wait(lambda s: checkpointed(s, last + 1), "checkpoints after the replacement")
        assert after["jobId"] == before["jobId"] and after["attempt"] == current["attempt"], after

        def one_set_of_pods() -> list[Json] | None:
            selector = f"streamjob.dev/job={job.name}"
            pods = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"]
            return pods if len(pods) == 3 else None

        pods = kube.wait_for(one_set_of_pods, 30, "the attempt's three pods")
        assert {p["metadata"]["labels"]["streamjob.dev/attempt"] for p in pods} == {str(after["attempt"])}
        job.wait(finished, "the job to finish", timeout=120)
        check_exact(job.out, 14000)
        names = job_pod_names(node_agent, kube_namespace)
        assert len(names) == len(set(names)), f"a pod was created twice: {names}"
    finally:
        kube.raw.delete(sj_path(kube_namespace, job.name))
        kube.wait_gone(sj_path(kube_namespace, job.name), 60)


def test_chart_with_two_replicas_keeps_one_active(
    helm: Helm, kube: Kube, kube_namespace: str, node_agent: NodeAgent
) -> None:
    kube.apply(CRD_FILE.read_text())
    release = f"sj-{uuid.uuid4().hex[:6]}"
    helm.install(
        release,
        CHART,
        kube_namespace,
        "--set", f"watchNamespaces={{{kube_namespace}}}",
        "--set", f"peering.name={release}",
        "--set", "replicas=2",
        # The bed's pods share the host's network: each replica serves /healthz on its own pod IP.
        "--set", "listenOnPodIP=true",
        "--set", "metrics.enabled=false",
        "--set", "podSecurityContext=null",
        # The bed keeps its pod directories under /tmp: an emptyDir over /tmp would hide them.
        "--set", "tmpVolume=false",
    )  # fmt: skip
    selector = f"app.kubernetes.io/instance={release}"
    pods_path = f"/api/v1/namespaces/{kube_namespace}/pods"
    try:

        def both_running() -> list[str] | None:
            pods = kube.raw.get(pods_path, labelSelector=selector)["items"]
            names = sorted(p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running")
            return names if len(names) == 2 else None

        names = kube.wait_for(both_running, 90, "two operator pods to run")

        def both_recorded() -> dict[str, Json] | None:
            for pod in kube.raw.get(pods_path, labelSelector=selector)["items"]:
                if any(s["restartCount"] for s in pod["status"].get("containerStatuses") or []):
                    name = pod["metadata"]["name"]
                    tail = node_agent.read_log(kube_namespace, name)[-1500:]
                    raise AssertionError(f"operator replica {name} crashed:\n{tail}")
            found = peers(kube, kube_namespace, release)
            return found if sorted(found) == names else None

        recorded = kube.wait_for(both_recorded, 60, "both replicas, by pod name, in the chart's peering object")
        leader = max(names, key=lambda n: int(recorded[n]["priority"]))
        standby = next(n for n in names if n != leader)
        kube.wait_for(lambda: active(node_agent.read_log(kube_namespace, leader)), 30, "the leader to be active")
        # A standby that came up first was active alone until it read the leader's record.
        kube.wait_for(lambda: not active(node_agent.read_log(kube_namespace, standby)), 30, "the standby to pause")

        path = f"{GROUP_PATH}/namespaces/{kube_namespace}/streamjobs"
        job = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": "parked"},
            "spec": {
                "image": "streamjob:e2e",
                "entrypoint": "examples.balance:build",
                "state": "suspended",
                "storage": {"checkpointsUri": "file:///tmp/streamjob-e2e/replicas"},
            },
        }
        kube.raw.create(path, job)

        def observed(generation: int) -> Any:
            status = kube.raw.get(f"{path}/parked").get("status") or {}
            return status if status.get("observedGeneration") == generation else None

        assert (
            kube.wait_for(lambda: observed(1), 60, "the active replica to reconcile")["lifecycleState"] == "Suspended"
        )
        # SIGKILL the active replica; its container restarts (restartPolicy Always) with a new random
        # priority, so either pod may be active next, but one must be and reconcile the next change.
        node_agent.crash(kube_namespace, leader)
        kube.raw.merge_patch(f"{path}/parked", {"spec": {"parallelism": 3}})
        kube.wait_for(lambda: observed(2), PEERING_LIFETIME_S + 30, "a replica to reconcile after the kill")
        kube.raw.delete(f"{path}/parked")
        kube.wait_gone(f"{path}/parked", 60)
    finally:
        helm.uninstall(release, kube_namespace)
        kube.wait_for(
            lambda: not kube.raw.get(pods_path, labelSelector=selector)["items"], 60, "the operator pods to go"
        )
