"""The Helm chart on the test bed: lint, install, and the operator Deployment's pod reconciling a job.

The installed operator runs as a pod of the node agent (``streamjob-operator`` from the test venv),
with in-cluster credentials of the chart's ServiceAccount and only the RBAC the chart grants.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.cluster.node_agent import NodeAgent

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
