"""Pod templates and ``kubectl scale`` on the test bed, through real kubectl.

A StreamJob applied with ``kubectl apply`` whose podTemplate adds an imagePullSecret, an init
container, a sidecar, envFrom and labels gets them in its JobMaster and worker pods (the node agent
runs the init container before the job's containers and the sidecar beside them), finishes with
exact output and is Finished although its sidecars still run. A template that takes an
operator-owned field or has an unknown field is kept as written (nothing pruned) and refused by the
operator naming each field, with nothing deployed. (``kubectl scale``: ``test_operator_rescale.py``.)
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.kubeapi import KubeError
from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_images import events_until, job_pods
from tests.e2e.test_operator_job_counting import ENTRYPOINT, check_exact
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished, sj_path

# The operator (one per module, watching every namespace) and the counting job of test_operator_jobs.
operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e

SETTINGS = "job-settings"
SIDECAR_SCRIPT = "import os, time; print('sidecar sees', os.environ.get('TEAM_SETTING'), flush=True); time.sleep(3600)"


def create_namespaced(job: Job, path: str, body: Json) -> None:
    try:
        job.kube.raw.create(f"/api/v1/namespaces/{job.namespace}/{path}", body)
    except KubeError as err:
        if err.status != 409:
            raise


def kubectl_apply(job: Job, count: int, rate: int, **spec: Any) -> str:
    """``kubectl apply`` of the counting StreamJob (and its S3 Secret), as a user would."""
    data = {"AWS_ACCESS_KEY_ID": job.s3.access_key, "AWS_SECRET_ACCESS_KEY": job.s3.secret_key}
    secret = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    create_namespaced(job, "secrets", {"metadata": {"name": "s3-credentials"}, "data": secret})
    body: Json = {
        "image": "streamjob:e2e",
        "entrypoint": ENTRYPOINT,
        "args": [f"file://{job.out}", str(count), str(rate)],
        "parallelism": 2,
        "storage": job.storage(),
        "restartPolicy": {"backoff": {"initialDelaySeconds": 0.5}},
        **spec,
    }
    manifest = {
        "apiVersion": "streamjob.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": job.name, "namespace": job.namespace},
        "spec": body,
    }
    return job.kube.apply(manifest)


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_pod_template_reaches_the_pods_and_the_job_stays_exact(job: Job, node_agent: NodeAgent) -> None:
    create_namespaced(job, "configmaps", {"metadata": {"name": SETTINGS}, "data": {"TEAM_SETTING": "blue"}})
    docker_config = base64.b64encode(json.dumps({"auths": {"registry.example": {"auth": "eDp5"}}}).encode())
    create_namespaced(
        job,
        "secrets",
        {
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": docker_config.decode()},
        },
    )
    env_from = [{"configMapRef": {"name": SETTINGS}}]
    template = {
        "metadata": {"labels": {"team": "blue"}, "annotations": {"example.com/owner": "team-blue"}},
        "spec": {
            "imagePullSecrets": [{"name": "regcred"}],
            "initContainers": [
                {"name": "prepare", "image": "python:3.12-slim", "command": ["python", "-c", "print('prepared')"]}
            ],
            "containers": [
                {"name": "jobmaster", "envFrom": env_from},
                {"name": "worker", "envFrom": env_from},
                {
                    "name": "log-agent",
                    "image": "python:3.12-slim",
                    "command": ["python", "-c", SIDECAR_SCRIPT],
                    "envFrom": env_from,
                },
            ],
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
        },
    }
    kubectl_apply(job, count=3000, rate=300, podTemplate=template)
    status = job.wait(lambda s: checkpointed(s, 1), "a checkpoint", timeout=180)
    pods = job_pods(job)
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        name, spec = pod["metadata"]["name"], pod["spec"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["metadata"]["labels"]["team"] == "blue"
        assert pod["metadata"]["annotations"]["example.com/owner"] == "team-blue"
        assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        main = spec["containers"][0]
        assert main["name"] in ("jobmaster", "worker") and main["envFrom"] == env_from
        assert [c["name"] for c in spec["containers"]] == [main["name"], "log-agent"]
        assert spec["containers"][1]["securityContext"]["allowPrivilegeEscalation"] is False
        # The init container ran to completion before the pod's containers, the sidecar runs beside them.
        init = node_agent.container_state(job.namespace, name, "prepare")
        assert init.get("terminated", {}).get("exitCode") == 0, init
        assert "prepared" in node_agent.read_log(job.namespace, name, "prepare")
        job.kube.wait_for(
            lambda name=name: "sidecar sees blue" in node_agent.read_log(job.namespace, name, "log-agent"),
            30,
            f"the sidecar of {name} to start",
        )
        pid = node_agent.pid(job.namespace, name, main["name"])
        assert pid is not None and process_env(pid).get("TEAM_SETTING") == "blue"
    assert status["parallelism"] == 2
    # The job finishes although its pods' sidecars still run.
    job.wait(finished, "the job to finish", timeout=180)
    assert node_agent.pid(job.namespace, job.pod("jobmaster", status["attempt"]), "log-agent") is not None
    check_exact(job.out, 3000)


def test_conflicting_and_unknown_template_fields_are_kept_and_refused_by_name(job: Job) -> None:
    template = {
        "spec": {
            "imagePullSecret": [{"name": "regcred"}],  # a typo of imagePullSecrets
            "containers": [{"name": "worker", "command": ["sh", "-c", "sleep 1"]}],
        }
    }
    kubectl_apply(job, count=100, rate=100, podTemplate=template)
    stored = job.kube.raw.get(sj_path(job.namespace, job.name))["spec"]["podTemplate"]
    assert stored == template, "the API server must keep what the user wrote for the operator to refuse"
    status = job.wait(lambda s: "invalid spec" in (s.get("error") or ""), "the refusal", timeout=60)
    error = status["error"]
    assert "spec.podTemplate.spec.imagePullSecret: unknown field of a PodSpec; did you mean imagePullSecrets?" in error
    events = events_until(job, "InvalidSpec")
    assert any(e["type"] == "Warning" and "imagePullSecret" in e["message"] for e in events)
    assert not job_pods(job), "nothing is deployed from a refused spec"
    # The typo fixed, the owned field is still named.
    template["spec"]["imagePullSecrets"] = template["spec"].pop("imagePullSecret")
    kubectl_apply(job, count=100, rate=100, podTemplate=template)
    status = job.wait(lambda s: "containers[0].command" in (s.get("error") or ""), "the second refusal", timeout=60)
    assert "spec.podTemplate.spec.containers[0].command: set by the operator" in status["error"]
    assert "imagePullSecret:" not in status["error"]
    assert not job_pods(job)
