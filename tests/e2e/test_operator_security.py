"""The operator's security on the test bed: the job's Secret, NetworkPolicies, hardened pods that
really run to exact output, refused specs, and the chart's RBAC checked with ``kubectl auth can-i``.

The bed's API server authorizes with RBAC and its controller manager garbage-collects owned
objects, so ownership and permissions are the real ones; its node agent runs the pods as local
processes (``securityContext`` accepted, not enforced; see ``tests/cluster/node_agent.py``).
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest

from streamjob.operator.resources.labels import JobRef
from streamjob.operator.resources.secret import derive_job_secret
from streamjob.worker.protocol.auth import derive_rest_token
from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.cluster.node_agent import NodeAgent
from tests.e2e import E2E_OPERATOR_KEY
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import (
    Job,
    OperatorProcess,
    checkpointed,
    finished,
    operator,
    sj_path,
)
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamjob"
__all__ = ["operator"]  # the module-scoped fixture of test_operator_jobs, shared


def _decoded(secret: Json) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def _owned_by(obj: Json, uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences", []))


def test_hardened_job_gets_its_secret_and_policies_and_runs_to_exact_output(
    kube: Kube, kube_namespace: str, s3: S3Endpoint, operator: OperatorProcess, node_agent: NodeAgent, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job = Job(kube, kube_namespace, s3, out, operator.log_path)
    job.create(count=3000, rate=400)
    status = job.wait(lambda s: checkpointed(s, 1), "Running with a checkpoint")
    body = kube.raw.get(sj_path(kube_namespace, job.name))
    uid = body["metadata"]["uid"]
    secret_value = derive_job_secret(E2E_OPERATOR_KEY, JobRef(job.name, kube_namespace, uid))
    secret_path = f"/api/v1/namespaces/{kube_namespace}/secrets/{job.name}-secret-{uid[:8]}"

    secret = kube.raw.get(secret_path)
    assert _owned_by(secret, uid)
    assert _decoded(secret) == {"job-secret": secret_value, "rest-token": derive_rest_token(secret_value)}

    policies = kube.raw.get(f"/apis/networking.k8s.io/v1/namespaces/{kube_namespace}/networkpolicies")["items"]
    by_name = {p["metadata"]["name"]: p for p in policies}
    assert set(by_name) == {f"{job.name}-internal", f"{job.name}-rest"}
    assert all(_owned_by(p, uid) for p in policies)
    # An operator outside the cluster has no namespace: no peer, so no rule (the API server drops the empty list).
    assert by_name[f"{job.name}-rest"]["spec"].get("ingress", []) == []

    selector = f"streamjob.dev/job={job.name}"
    pods = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"]
    assert len(pods) == 3 and {p["metadata"]["labels"]["streamjob.dev/attempt"] for p in pods} == {
        str(status["attempt"])
    }
    for pod in pods:
        spec = pod["spec"]
        name = pod["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, name
        assert not [v for v in spec["volumes"] if "projected" in v], f"{name} got a service-account token volume"
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = spec["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        ref = next(e for e in container["env"] if e["name"] == "STREAMJOB_JOB_SECRET")["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{job.name}-secret-{uid[:8]}", "key": "job-secret"}
        assert secret_value not in str(pod)
        # The process really received the secret, resolved from the Secret through the API.
        run = node_agent.find(kube_namespace, name)
        assert run.containers[0].env["STREAMJOB_JOB_SECRET"] == secret_value
        assert run.containers[0].env["TMPDIR"] == "/tmp"
    configmaps = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/configmaps", labelSelector=selector)["items"]
    assert configmaps and all(secret_value not in str(cm) for cm in configmaps)
    assert secret_value not in str(job.status())
    events = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/events")["items"]
    assert events and all(secret_value not in str(e) for e in events)
    assert secret_value not in operator.log_path.read_text(errors="replace")

    job.wait(finished, "the job to finish", timeout=120)
    check_exact(job.out, 3000)

    kube.raw.delete(sj_path(kube_namespace, job.name))
    kube.wait_gone(sj_path(kube_namespace, job.name), 60)
    kube.wait_gone(secret_path, 60)  # garbage-collected with its StreamJob


REFUSED = [
    (
        "hostpath",
        {"taskManager": {"volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}]}},
        "spec.taskManager.volumes[0].hostPath is not allowed; set operator value security.allowHostPath=true",
    ),
    (
        "privileged",
        {"jobManager": {"containerSecurityContext": {"privileged": True}}},
        "spec.jobManager.containerSecurityContext.privileged is not allowed; set operator value "
        "security.allowPrivileged=true",
    ),
    (
        "foreign-sa",
        {"serviceAccount": "cluster-admin"},
        "spec.serviceAccount 'cluster-admin' is not allowed; set operator value "
        "security.allowedServiceAccounts={cluster-admin}",
    ),
]


def test_specs_asking_for_host_access_are_refused_naming_the_field(
    kube: Kube, kube_namespace: str, operator: OperatorProcess
) -> None:
    for name, extra, _ in REFUSED:
        spec = {
            "image": "streamjob:e2e",
            "entrypoint": "examples.balance:build",
            "storage": {"checkpointsUri": "file:///tmp/streamjob-e2e/refused"},
            **extra,
        }
        manifest = {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob", "metadata": {"name": name}}
        kube.raw.create(sj_path(kube_namespace), {**manifest, "spec": spec})
    for name, _, message in REFUSED:

        def reported(job: str = name, expected: str = message) -> Json | None:
            status = kube.raw.get(sj_path(kube_namespace, job)).get("status") or {}
            return status if expected in (status.get("error") or "") else None

        status = kube.wait_for(reported, 60, f"{name} to be refused")
        assert status.get("lifecycleState") in (None, "Created") and not status.get("jobId")

        def warned(job: str = name, expected: str = message) -> bool:
            events = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/events")["items"]
            return any(
                e["involvedObject"].get("name") == job and e["type"] == "Warning" and expected in e["message"]
                for e in events
            )

        kube.wait_for(warned, 30, f"a Warning event about {name}")
    pods = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods")["items"]
    assert pods == []
    secrets = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/secrets")["items"]
    assert not [s for s in secrets if s["metadata"]["name"].startswith(tuple(n for n, _, _ in REFUSED))]


def _can(kube: Kube, account: str, namespace: str, verb: str, resource: str) -> bool:
    result = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={account}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i: {result.stdout} {result.stderr}"
    return answer == "yes"


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_chart_rbac_creates_but_never_reads_secrets_unless_asked(
    helm: Helm, kube: Kube, kube_namespace: str, mode: str
) -> None:
    release = f"sj-{uuid.uuid4().hex[:6]}"
    base = ["--set", f"peering.name={release}", "--set", "replicas=0", "--set", "metrics.enabled=false"]
    if mode == "namespaced":
        base += ["--set", f"watchNamespaces={{{kube_namespace}}}"]
    helm.install(release, CHART, kube_namespace, *base)
    try:
        account = f"system:serviceaccount:{kube_namespace}:{release}-streamjob"
        for namespace in (kube_namespace, "kube-system", "default"):
            for verb in ("get", "list", "watch", "update", "delete"):
                allowed = _can(kube, account, namespace, verb, "secrets")
                assert not allowed, f"the operator ({mode}) may {verb} secrets in {namespace}"
        assert _can(kube, account, kube_namespace, "create", "secrets")
        assert _can(kube, account, kube_namespace, "create", "networkpolicies.networking.k8s.io")
        assert _can(kube, account, kube_namespace, "create", "pods")
        # Namespaced mode reaches no other namespace; cluster-wide mode creates pods and Secrets anywhere.
        elsewhere = mode == "cluster-wide"
        assert _can(kube, account, "default", "create", "pods") is elsewhere
        assert _can(kube, account, "default", "create", "secrets") is elsewhere

        key_path = f"/api/v1/namespaces/{kube_namespace}/secrets/{release}-streamjob-operator-key"
        key = _decoded(kube.raw.get(key_path))["operator-key"]
        assert len(key) == 48

        helm.run(
            "upgrade", release, str(CHART), "--namespace", kube_namespace, *base, "--set", "rbac.readJobSecrets=true"
        )
        assert _can(kube, account, kube_namespace, "get", "secrets")
        assert not _can(kube, account, kube_namespace, "list", "secrets")
        assert _decoded(kube.raw.get(key_path))["operator-key"] == key, "helm upgrade changed the operator key"
        deployment = kube.raw.get(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments/{release}-streamjob")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["STREAMJOB_OPERATOR_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{release}-streamjob-operator-key",
            "key": "operator-key",
        }
        assert env["STREAMJOB_READ_JOB_SECRETS"]["value"] == "true"
    finally:
        helm.uninstall(release, kube_namespace)
