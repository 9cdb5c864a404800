"""The operator and its jobs as users run them: the built images on two real kubelets and containerds.

One module, in order: ``helm install`` of charts/streamjob with the built image (the operator pod Ready
in a container, talking to the API server through the ``kubernetes`` Service with its own service
account); the shipped ``examples/k8s/balance.yaml`` (only its S3 endpoint changed) with its workers
on both nodes; the e2e counting job (exact output in S3) surviving a SIGKILLed worker container and
JobMaster container, then a savepoint upgrade to a new image tag with a rescale, then a delete with a
final savepoint; the job pods' securityContext; the job's NetworkPolicy enforced by kube-router
(another job's pod and an unlabelled pod cannot reach the JobMaster's control port, the job's own
pods can); a whole node killed (kubelet,
containerd and its containers) under a running job, whose lost worker is replaced in place on the
other node; ``helm uninstall``.

SeaweedFS (tests/support) and the API server listen on 127.0.0.1; the cluster forwards them to pods
(tests/containers/cluster.py). kube-router enforces NetworkPolicies for the pods of ``POLICY_NODE``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import build
from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.containers.cluster import NODE_NAMES, POLICY_NODE, ContainerCluster
from tests.containers.conftest import ContainerImages
from tests.e2e.test_operator_job_counting import check_exact
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.containers

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamjob"
EXAMPLES = ROOT / "examples" / "k8s"
OPS = "streamjob-system"
JOBS = "jobs"
RELEASE = "streamjob"
GROUP = "/apis/streamjob.dev/v1alpha1"


def sj_path(name: str = "") -> str:
    return f"{GROUP}/namespaces/{JOBS}/streamjobs" + (f"/{name}" if name else "")


@pytest.fixture(scope="module")
def pod_s3(container_cluster: ContainerCluster, s3: S3Endpoint) -> str:
    """The S3 endpoint as pods reach it."""
    return "http://" + container_cluster.forward(int(s3.endpoint_url.rsplit(":", 1)[1]))


@pytest.fixture(scope="module")
def operator(
    container_kube: Kube, container_images: ContainerImages, s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Helm]:
    """The chart installed with the built image; uninstalled (and checked) by the last test."""
    kube = container_kube
    helm = Helm(
        binary=build("helm", tmp_path_factory.mktemp("helm-build")),
        kubeconfig=kube.kubeconfig,
        home=tmp_path_factory.mktemp("helm"),
    )
    for namespace in (OPS, JOBS):
        kube.raw.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        kube.wait_for(lambda ns=namespace: kube.raw.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default"), 60)
    for namespace in (OPS, JOBS):
        kube.apply(_s3_secret(s3), namespace)
    helm.install(
        RELEASE, CHART, OPS,
        "--set", f"image.tag={container_images.version}",
        "--set", "image.pullPolicy=Never",  # loaded into the nodes, never pulled
        "--set", "replicas=1",
        "--set", f"watchNamespaces={{{JOBS}}}",
        "--set", "storageCredentials.existingSecret=s3-credentials",
        "--set", "pollIntervalSeconds=1",
        "--wait", "--timeout", "300s",
    )  # fmt: skip
    yield helm


def _s3_secret(s3: S3Endpoint) -> Json:
    secret: Json = yaml.safe_load((EXAMPLES / "s3-credentials.yaml").read_text())
    secret["stringData"] = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    return secret


def _pods(kube: Kube, namespace: str, selector: str) -> list[Json]:
    return list(kube.raw.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)["items"])


def _ready(pod: Json) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def _status(kube: Kube, name: str) -> Json:
    return dict(kube.raw.get(sj_path(name)).get("status") or {})


def _wait_status(kube: Kube, name: str, check: Any, what: str, timeout: float = 240.0) -> Json:
    def ready() -> Json | None:
        status = _status(kube, name)
        return status if status and check(status) else None

    try:
        return kube.wait_for(ready, timeout, what, interval=0.5)
    except AssertionError as err:
        raise AssertionError(f"{err}\nstatus: {json.dumps(_status(kube, name), indent=1)[:3000]}") from None


def _running(s: Json) -> bool:
    return s.get("lifecycleState") == "Running" and not s.get("operation")


def _checkpointed(s: Json, after: int) -> bool:
    return _running(s) and int((s.get("lastCheckpoint") or {}).get("id") or 0) > after


def test_operator_runs_ready_in_a_container_with_its_service_account(
    operator: Helm, container_kube: Kube, container_images: ContainerImages
) -> None:
    pods = _pods(container_kube, OPS, f"app.kubernetes.io/instance={RELEASE}")
    (pod,) = [p for p in pods if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "uninstall-hook"]
    assert _ready(pod), pod["status"]
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == f"streamjob:{container_images.version}"
    assert spec["serviceAccountName"] != "default" and spec["nodeName"] in ("127.0.0.2", "127.0.0.3")
    # In-cluster config through the kubernetes Service: no kubeconfig anywhere in the pod.
    assert "--kubeconfig" not in json.dumps(spec["containers"][0])
    env = container_kube.kubectl(
        "exec", "-n", OPS, pod["metadata"]["name"], "--", "printenv", "KUBERNETES_SERVICE_HOST"
    )
    assert env.stdout.strip() == "10.96.0.1"


def test_the_balance_example_runs_as_shipped_on_both_nodes(operator: Helm, container_kube: Kube, pod_s3: str) -> None:
    kube = container_kube
    manifest: Json = yaml.safe_load((EXAMPLES / "balance.yaml").read_text())
    assert manifest["spec"]["storage"]["s3"]["endpoint"] == "http://minio.storage.svc:9000"
    manifest["spec"]["storage"]["s3"]["endpoint"] = pod_s3  # no cluster DNS, no MinIO here
    kube.apply(manifest, JOBS)
    status = _wait_status(kube, "balance", lambda s: s.get("lifecycleState") in ("Finished", "Failed"), "balance")
    assert status["lifecycleState"] == "Finished" and not status.get("error"), status
    workers = [p for p in _pods(kube, JOBS, "streamjob.dev/job=balance") if "-worker-" in p["metadata"]["name"]]
    assert {p["spec"]["nodeName"] for p in workers} == {"127.0.0.2", "127.0.0.3"}, "the workers share a node"
    logs = "".join(kube.kubectl("logs", "-n", JOBS, p["metadata"]["name"]).stdout for p in workers)
    assert "User user1 balance: 250.0" in logs and "User user3 balance: 300.0" in logs, logs[-2000:]
    kube.raw.delete(sj_path("balance"))
    kube.wait_gone(sj_path("balance"), 120)


class CountingJob:
    """The e2e counting job (tests/e2e/test_operator_job_counting.py) from the jobs image, output in S3."""

    def __init__(self, kube: Kube, s3: S3Endpoint, pod_s3: str, count: int) -> None:
        self.kube, self.s3, self.count = kube, s3, count
        self.name = "counting"
        self.prefix = f"containers-{uuid.uuid4().hex[:8]}"
        self.storage = {
            "checkpointsUri": f"s3://{s3.bucket}/{self.prefix}/checkpoints",
            "savepointsUri": f"s3://{s3.bucket}/{self.prefix}/savepoints",
            "s3": {"endpoint": pod_s3, "region": s3.region, "pathStyle": True,
                   "credentialsSecret": {"name": "s3-credentials"}},
        }  # fmt: skip

    def create(self, **spec: Any) -> None:
        body = {
            "image": "streamjob-test-jobs:1",
            "imagePullPolicy": "Never",
            "entrypoint": "counting_job:counting_job",
            "args": [f"s3://{self.s3.bucket}/{self.prefix}/out", str(self.count), "150", "300"],
            "parallelism": 2,
            "upgradeMode": "savepoint",
            "storage": self.storage,
            "restartPolicy": {"backoff": {"initialDelaySeconds": 0.5}},
            **spec,
        }
        manifest = {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob", "metadata": {"name": self.name}}
        self.kube.raw.create(sj_path(), {**manifest, "spec": body})

    def pod(self, role: str, attempt: int, index: int = 0) -> Json:
        name = f"{self.name}-jobmaster-{attempt}" if role == "jobmaster" else f"{self.name}-worker-{attempt}-{index}"
        return self.kube.pod(JOBS, name)

    def check_exact(self, into: Path) -> None:
        client: Any = self.s3.client()  # type: ignore[no-untyped-call]
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.s3.bucket, Prefix=f"{self.prefix}/out/"):
            for item in page.get("Contents", []):
                target = into / item["Key"].rsplit("/", 1)[1]
                client.download_file(self.s3.bucket, item["Key"], str(target))
        check_exact(into, self.count)

    def savepoints(self) -> list[str]:
        client: Any = self.s3.client()  # type: ignore[no-untyped-call]
        listed = client.list_objects_v2(Bucket=self.s3.bucket, Prefix=f"{self.prefix}/savepoints/")
        return [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("/_metadata")]


def test_killed_containers_upgrade_rescale_and_delete_keep_the_output_exact(
    operator: Helm, container_kube: Kube, container_cluster: ContainerCluster, s3: S3Endpoint, pod_s3: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    kube = container_kube
    job = CountingJob(kube, s3, pod_s3, count=9000)
    job.create(savepointOnDeletion=True)
    first = _wait_status(kube, job.name, lambda s: _checkpointed(s, 1), "checkpoints")

    # A worker container SIGKILLed on its node: the JobMaster stays up, the operator replaces only that
    # worker's pod, and the tasks run again from the latest checkpoint (two newer checkpoints follow).
    victim = job.pod("worker", first["attempt"], 1)
    jobmaster = job.pod("jobmaster", first["attempt"])
    container_cluster.kill_container(victim, "worker")
    attempt = first["attempt"]
    selector = f"streamjob.dev/job={job.name},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"

    def replaced(s: Json) -> bool:
        pods = _pods(kube, JOBS, selector)
        up = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        fresh = victim["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
        return fresh and len(up) == 2 and _checkpointed(s, int(first["lastCheckpoint"]["id"]) + 1)

    second = _wait_status(kube, job.name, replaced, "the worker replaced and two checkpoints after it")
    assert second["attempt"] == first["attempt"] and second["jobId"] == first["jobId"], second
    assert job.pod("jobmaster", second["attempt"])["metadata"]["uid"] == jobmaster["metadata"]["uid"]

    # The JobMaster container SIGKILLed: recovery from storage alone.
    container_cluster.kill_container(job.pod("jobmaster", second["attempt"]), "jobmaster")
    third = _wait_status(kube, job.name, lambda s: _running(s) and s["attempt"] > second["attempt"], "recovery")
    assert "/chk-" in (third.get("restoreFrom") or ""), third
    _wait_status(kube, job.name, lambda s: _checkpointed(s, int(third["lastCheckpoint"]["id"])), "checkpoint")

    # A savepoint upgrade to a new image tag, rescaled 2 -> 3 at the same time.
    kube.raw.merge_patch(sj_path(job.name), {"spec": {"image": "streamjob-test-jobs:2", "parallelism": 3}})
    upgraded = _wait_status(kube, job.name, lambda s: _running(s) and s.get("parallelism") == 3, "the upgrade")
    assert "savepoint-" in upgraded["restoreFrom"] and upgraded["lastSavepoint"]["trigger"] == "upgrade", upgraded
    workers = [job.pod("worker", upgraded["attempt"], i) for i in range(3)]
    assert {w["spec"]["containers"][0]["image"] for w in workers} == {"streamjob-test-jobs:2"}
    _check_security(kube, workers[0], job.pod("jobmaster", upgraded["attempt"]))

    _wait_status(kube, job.name, lambda s: s.get("lifecycleState") == "Finished", "the job to finish", timeout=300)
    job.check_exact(tmp_path)

    # Deleted with a final savepoint (the job has finished: delete a running one instead).
    kube.raw.delete(sj_path(job.name))
    kube.wait_gone(sj_path(job.name), 120)


def test_delete_takes_a_final_savepoint(operator: Helm, container_kube: Kube, s3: S3Endpoint, pod_s3: str) -> None:
    kube = container_kube
    job = CountingJob(kube, s3, pod_s3, count=100000)
    job.create(savepointOnDeletion=True, parallelism=1)
    _wait_status(kube, job.name, lambda s: _checkpointed(s, 0), "checkpoints")
    before = set(job.savepoints())
    kube.raw.delete(sj_path(job.name))
    kube.wait_gone(sj_path(job.name), 180)
    assert set(job.savepoints()) - before, "no final savepoint was written"
    kube.wait_for(lambda: not _pods(kube, JOBS, f"streamjob.dev/job={job.name}"), 120, "the job's pods to go")


def test_the_network_policy_keeps_other_pods_from_the_jobmasters_control_port(
    operator: Helm, container_kube: Kube, container_images: ContainerImages, s3: S3Endpoint, pod_s3: str
) -> None:
    """kube-router enforces the job's NetworkPolicies on the JobMaster's node: the same probe, three peers.

    The job's own worker connects to port 6123 (the job checkpoints, so its data and control planes
    work through the policy); a pod of another job and an unlabelled pod, on the other node, are
    refused there while they reach the S3 forwarder on the host (their network works).
    """
    kube = container_kube
    job = CountingJob(kube, s3, pod_s3, count=1_000_000)
    job.name = "guarded"
    job.create(parallelism=1, jobManager={"nodeSelector": {"kubernetes.io/hostname": POLICY_NODE}})
    status = _wait_status(kube, job.name, lambda s: _checkpointed(s, 0), "checkpoints")
    jobmaster = job.pod("jobmaster", status["attempt"])
    ip = jobmaster["status"]["podIP"]
    assert jobmaster["spec"]["nodeName"] == POLICY_NODE
    probe = f"import socket; socket.create_connection(('{ip}', 6123), timeout=5).close(); print('connected')"
    worker = job.pod("worker", status["attempt"])["metadata"]["name"]
    own = kube.kubectl("exec", "-n", JOBS, worker, "--", "python3", "-c", probe, check=False)
    assert own.returncode == 0 and "connected" in own.stdout, own.stderr
    host, port = pod_s3.removeprefix("http://").split(":")
    reach_s3 = f"import socket; socket.create_connection(('{host}', {port}), timeout=5).close(); print('connected')"
    peers = {"intruder": {}, "other-job": {"app.kubernetes.io/name": "streamjob", "streamjob.dev/job": "other"}}
    try:
        for name, labels in peers.items():
            kube.create_pod(JOBS, _sleeper(name, labels, f"streamjob:{container_images.version}", NODE_NAMES[1]))
        for name in peers:
            kube.wait_for(lambda n=name: _ready(kube.pod(JOBS, n)), 120, f"pod {name} ready")
            reached = kube.kubectl("exec", "-n", JOBS, name, "--", "python3", "-c", reach_s3, check=False)
            assert reached.returncode == 0 and "connected" in reached.stdout, reached.stderr
            refused = kube.kubectl("exec", "-n", JOBS, name, "--", "python3", "-c", probe, check=False)
            assert refused.returncode != 0 and "connected" not in refused.stdout, (name, refused.stdout)
            assert "Error" in refused.stderr, refused.stderr  # refused, unreachable or timed out: not a kubectl failure
    finally:
        for name in peers:
            kube.kubectl("delete", "pod", "-n", JOBS, name, "--grace-period=0", "--wait=false", check=False)
        kube.raw.delete(sj_path(job.name))
        kube.wait_gone(sj_path(job.name), 120)


def _sleeper(name: str, labels: dict[str, str], image: str, node: str) -> Json:
    """A pod that idles (for ``kubectl exec``) on ``node``, as restricted as the job's own pods."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "600"],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def test_a_killed_node_loses_its_worker_and_the_job_recovers_in_place_exactly(
    operator: Helm, container_kube: Kube, container_cluster: ContainerCluster, s3: S3Endpoint, pod_s3: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Node B's kubelet, containerd, shims and container processes SIGKILLed at once, as in a power loss.

    Nothing reports the containers' end: the API keeps the pods Running until the node lifecycle
    controller marks the node Unknown and its pods not ready. The operator then force-deletes the
    lost worker pod and replaces it (``<worker>-r1``) on the live node; the JobMaster, kept on the
    operator's node, redeploys the tasks from the latest checkpoint in the same attempt.
    """
    kube = container_kube
    (op_pod,) = _pods(kube, OPS, f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component!=uninstall-hook")
    live = op_pod["spec"]["nodeName"]
    (doomed,) = [n for n in ("127.0.0.2", "127.0.0.3") if n != live]
    job = CountingJob(kube, s3, pod_s3, count=9000)
    workers_apart = {
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"streamjob.dev/job": job.name, "app.kubernetes.io/component": "worker"}},
        },
    }
    job.create(
        jobManager={"nodeSelector": {"kubernetes.io/hostname": live}},
        taskManager={
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [workers_apart]}}
        },
    )
    first = _wait_status(kube, job.name, lambda s: _checkpointed(s, 1), "checkpoints")
    attempt = first["attempt"]
    jobmaster = job.pod("jobmaster", attempt)
    workers = [job.pod("worker", attempt, i) for i in range(2)]
    victims = [w["metadata"]["name"] for w in workers if w["spec"]["nodeName"] == doomed]
    assert jobmaster["spec"]["nodeName"] == live and len(victims) == 1, [w["spec"]["nodeName"] for w in workers]

    container_cluster.kill_node(doomed)
    try:
        selector = f"streamjob.dev/job={job.name},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"

        def replaced(s: Json) -> bool:
            pods = _pods(kube, JOBS, selector)
            up = [p for p in pods if _ready(p) and p["spec"]["nodeName"] == live]
            gone = victims[0] not in {p["metadata"]["name"] for p in pods}
            return gone and len(up) == 2 and _checkpointed(s, int(first["lastCheckpoint"]["id"]) + 1)

        second = _wait_status(kube, job.name, replaced, "the lost worker replaced and two checkpoints after it")
        assert second["attempt"] == attempt and second["jobId"] == first["jobId"], second
        assert job.pod("jobmaster", attempt)["metadata"]["uid"] == jobmaster["metadata"]["uid"]
        names = {p["metadata"]["name"] for p in _pods(kube, JOBS, selector)}
        assert f"{victims[0]}-r1" in names, names
        node = kube.raw.get(f"/api/v1/nodes/{doomed}")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown", ready  # the node lifecycle controller's verdict, not a kubelet's
        events = kube.raw.get(f"/api/v1/namespaces/{JOBS}/events", fieldSelector="reason=WorkerReplaced")["items"]
        assert any(victims[0] in e["message"] and doomed in e["message"] for e in events), events
    finally:
        container_cluster.restart_node(doomed)
    _wait_status(kube, job.name, lambda s: s.get("lifecycleState") == "Finished", "the job to finish", timeout=300)
    job.check_exact(tmp_path)
    kube.raw.delete(sj_path(job.name))
    kube.wait_gone(sj_path(job.name), 120)


def _check_security(kube: Kube, worker: Json, jobmaster: Json) -> None:
    """The restrictive defaults reach the containers, and the job's NetworkPolicies exist."""
    for pod in (worker, jobmaster):
        spec = pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, spec
        assert spec["securityContext"].get("runAsNonRoot") is True, spec["securityContext"]
        context = spec["containers"][0]["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, context
        assert context["capabilities"]["drop"] == ["ALL"], context
    name = worker["metadata"]["name"]
    ident = kube.kubectl("exec", "-n", JOBS, name, "--", "id", "-u").stdout.strip()
    assert ident == "10001"
    # The root filesystem is read-only for real (the runtime enforces it, not only the spec).
    touch = kube.kubectl("exec", "-n", JOBS, name, "--", "touch", "/opt/jobs/x", check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr + touch.stdout
    policies = kube.raw.get(f"/apis/networking.k8s.io/v1/namespaces/{JOBS}/networkpolicies")["items"]
    assert policies, "the job has no NetworkPolicy"


def test_helm_uninstall_removes_the_operator(operator: Helm, container_kube: Kube) -> None:
    operator.uninstall(RELEASE, OPS)
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component!=uninstall-hook"
    container_kube.wait_for(lambda: not _pods(container_kube, OPS, selector), 120, "the operator pod to go")
