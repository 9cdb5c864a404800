"""The Helm chart on the test bed: lint, install, and the operator Deployment's pod reconciling a job.

The installed operator runs as a pod of the node agent (``streamjob-operator`` from the test venv),
with in-cluster credentials of the chart's ServiceAccount and only the RBAC the chart grants.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.cluster.node_agent import NodeAgent
from tests.e2e.test_operator_job_counting import ENTRYPOINT as COUNTING

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamjob"


@pytest.mark.parametrize(
    "values", [[], ["--set", "watchNamespaces={a,b}"], ["--set", "peering.enabled=false", "--set", "replicas=1"]]
)
def test_chart_lints_clean(helm: Helm, values: list[str]) -> None:
    result = helm.lint(CHART, "--strict", *values)
    assert "0 chart(s) failed" in result.stdout


def test_helm_install_runs_an_operator_that_reconciles(
    helm: Helm, kube: Kube, kube_namespace: str, node_agent: NodeAgent
) -> None:
    release = f"sj-{uuid.uuid4().hex[:6]}"
    helm.install(
        release,
        CHART,
        kube_namespace,
        "--set", f"watchNamespaces={{{kube_namespace}}}",
        "--set", f"peering.name={release}",
        "--set", "replicas=1",
        "--set", "metrics.enabled=false",
        "--set", "image.repository=streamjob",
        "--set", "podSecurityContext=null",
        # The bed keeps its pod directories under /tmp: an emptyDir over /tmp would hide them.
        "--set", "tmpVolume=false",
    )  # fmt: skip
    try:
        selector = f"app.kubernetes.io/instance={release}"

        def operator_running() -> Json | None:
            pods = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"]
            return next((p for p in pods if p.get("status", {}).get("phase") == "Running"), None)

        pod = kube.wait_for(operator_running, 90, "the operator pod to run")
        job = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": "parked"},
            "spec": {
                "image": "streamjob:e2e",
                "entrypoint": "examples.balance:build",
                "state": "suspended",
                "storage": {"checkpointsUri": "file:///tmp/streamjob-e2e/helm"},
            },
        }
        path = f"/apis/streamjob.dev/v1alpha1/namespaces/{kube_namespace}/streamjobs"
        kube.raw.create(path, job)

        def reconciled() -> Json | None:
            status = kube.raw.get(f"{path}/parked").get("status") or {}
            return status if status.get("lifecycleState") == "Suspended" else None

        try:
            status = kube.wait_for(reconciled, 90, "the operator pod to reconcile the StreamJob")
        except AssertionError:
            log = node_agent.read_log(kube_namespace, pod["metadata"]["name"])
            raise AssertionError(f"operator log:\n{log[-4000:]}") from None
        assert status["observedGeneration"] == 1
        kube.raw.delete(f"{path}/parked")
        kube.wait_gone(f"{path}/parked", 60)
    finally:
        helm.uninstall(release, kube_namespace)
        kube.wait_for(
            lambda: not kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"],
            60,
            "the operator pod to be gone",
        )


def _template(helm: Helm, *values: str) -> list[Json]:
    out = helm.run("template", "rel", str(CHART), "--namespace", "ops", *values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_chart_has_a_readiness_probe_a_pdb_only_with_replicas_and_an_uninstall_hook(helm: Helm) -> None:
    docs = _template(helm)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    # A Service's docker-link variables (STREAMJOB_METRICS_PORT=tcp://...) would override the operator's settings.
    assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "healthz"}, probe
    assert ("PodDisruptionBudget", "rel-streamjob") in kinds  # the default: 2 replicas
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    hook = next(d for d in docs if d["kind"] == "Job")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    command = hook["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python3", "-m", "streamjob.operator.release"] and "--suspend" in command, command
    single = _template(helm, "--set", "replicas=1", "--set", "uninstall.jobs=release")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"], "one replica: no PDB (it would block drains)"
    released = next(d for d in single if d["kind"] == "Job")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--suspend" not in released
    assert not [d for d in _template(helm, "--set", "uninstall.jobs=keep") if d["kind"] == "Job"]
    bad = helm.run("template", "rel", str(CHART), "--set", "uninstall.jobs=drop", check=False)
    assert bad.returncode != 0 and "uninstall.jobs must be suspend, release or keep" in bad.stderr


def test_upgrade_waits_for_readiness_and_uninstall_suspends_jobs_and_releases_them(
    helm: Helm, kube: Kube, kube_namespace: str, node_agent: NodeAgent, tmp_path: Path
) -> None:
    release = f"sj-{uuid.uuid4().hex[:6]}"
    values = [
        "--set", f"watchNamespaces={{{kube_namespace}}}",
        "--set", f"peering.name={release}",
        "--set", "replicas=1",
        "--set", "metrics.enabled=false",
        "--set", "image.repository=streamjob",
        "--set", "podSecurityContext=null",
        "--set", "tmpVolume=false",
        "--set", "listenOnPodIP=true",
        "--set", "uninstall.timeoutSeconds=120",
    ]  # fmt: skip
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component!=uninstall-hook"
    helm.install(release, CHART, kube_namespace, *values, "--wait", "--timeout", "120s")
    path = f"/apis/streamjob.dev/v1alpha1/namespaces/{kube_namespace}/streamjobs"
    try:
        pods = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"]
        ready = [c for c in pods[0]["status"]["conditions"] if c["type"] == "Ready"]
        assert len(pods) == 1 and ready[0]["status"] == "True", "--wait returned before the operator was ready"
        # An operator that never becomes ready fails `helm upgrade --wait` (and keeps the old one serving).
        never = helm.run(
            "upgrade", release, str(CHART), "--namespace", kube_namespace, *values,
            "--set", "readinessProbe.httpGet.path=/not-ready", "--wait", "--timeout", "45s", check=False,
        )  # fmt: skip
        assert never.returncode != 0, never.stdout
        helm.run("upgrade", release, str(CHART), "--namespace", kube_namespace, *values, "--wait", "--timeout", "120s")

        # A running job: `helm uninstall` suspends it with a savepoint and lets it go.
        out = tmp_path / "out"
        out.mkdir()
        spec = {
            "image": "streamjob:e2e",
            "entrypoint": COUNTING,
            "args": [f"file://{out}", "100000", "200"],
            "parallelism": 1,
            "upgradeMode": "savepoint",
            "storage": {"checkpointsUri": f"file://{tmp_path}/checkpoints", "savepointsUri": f"file://{tmp_path}/sp"},
        }
        kube.raw.create(path, {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob",
                               "metadata": {"name": "kept"}, "spec": spec})  # fmt: skip

        def checkpointed() -> Json | None:
            status = kube.raw.get(f"{path}/kept").get("status") or {}
            running = status.get("lifecycleState") == "Running" and status.get("lastCheckpoint")
            return status if running else None

        kube.wait_for(checkpointed, 120, "the job to run and checkpoint under the chart's operator")
    finally:
        helm.run("uninstall", release, "--namespace", kube_namespace, "--timeout", "300s")
    body = kube.raw.get(f"{path}/kept")
    status = body["status"]
    assert status["lifecycleState"] == "Suspended", status
    assert [s for s in status.get("savepointHistory", []) if s.get("trigger") == "suspend"], status
    assert "streamjob.dev/finalizer" not in (body["metadata"].get("finalizers") or [])
    assert "streamjob.dev/released" in body["metadata"]["annotations"]
    job_selector = "streamjob.dev/job=kept"
    assert not kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=job_selector)["items"]
    # With no operator left, deleting the StreamJob does not hang on a finalizer.
    kube.kubectl("delete", "sj", "kept", "-n", kube_namespace, "--timeout=30s")
    kube.wait_gone(f"{path}/kept", 30)
