"""The shipped ``examples/k8s`` manifests run on the test bed as written, but for where storage is.

``balance.yaml`` names the image ``streamjob-examples:0.1.0``, which the node agent knows with
``examples/`` on its PYTHONPATH (``tests/cluster/images.py``, as the image built FROM streamjob sets
it), and storage at ``minio.storage.svc``: only the S3 endpoint and the credentials' values are
replaced by the bed's. The job (four transactions) must run to Finished without an error, its
balances printed by the worker (one ``No module named 'examples'`` failure went unseen before).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_jobs import Json, sj_path
from tests.support.s3server import S3Endpoint

operator = jobs.operator

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "k8s"


def test_the_balance_example_runs_as_shipped(
    operator: jobs.OperatorProcess, kube: jobs.Kube, kube_namespace: str, node_agent: NodeAgent, s3: S3Endpoint
) -> None:
    secret = yaml.safe_load((EXAMPLES / "s3-credentials.yaml").read_text())
    secret["stringData"] = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    manifest: Json = yaml.safe_load((EXAMPLES / "balance.yaml").read_text())
    assert manifest["spec"]["storage"]["s3"]["endpoint"] == "http://minio.storage.svc:9000"
    manifest["spec"]["storage"]["s3"]["endpoint"] = s3.endpoint_url  # the bed has no cluster DNS
    kube.apply(secret, kube_namespace)
    kube.apply(manifest, kube_namespace)

    def done() -> Json | None:
        status = kube.raw.get(sj_path(kube_namespace, "balance")).get("status") or {}
        return status if status.get("lifecycleState") in ("Finished", "Failed") else None

    status = kube.wait_for(done, 180, "the balance example to finish")
    assert status["lifecycleState"] == "Finished" and not status.get("error"), status
    logs = "".join(
        log.read_text(errors="replace")
        for pod in node_agent.pod_dirs(kube_namespace)
        if "-worker-" in pod.name
        for log in (pod / "logs").glob("*.log")
    )
    assert "No module named" not in logs
    assert "User user1 balance: 250.0" in logs and "User user3 balance: 300.0" in logs, logs[-2000:]
    kube.raw.delete(sj_path(kube_namespace, "balance"))
    kube.wait_gone(sj_path(kube_namespace, "balance"), 60)
