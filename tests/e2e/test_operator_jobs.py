"""Real jobs under the operator on the test bed: checkpoints in S3, failover, upgrades, exact results.

The pods run ``counting_job`` (``test_operator_job_counting.py``). After any number of failures,
restores and rescales, its committed output must hold every number exactly once and, per key, a
final sum equal to the sum of that key's numbers.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixtures import Kube
from tests.cluster.kubeapi import KubeError
from tests.cluster.node_agent import NodeAgent
from tests.e2e import E2E_OPERATOR_KEY
from tests.e2e.test_operator_job_counting import ENTRYPOINT, check_exact
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
SNAPSHOT_CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobsnapshots.yaml"
GROUP_PATH = "/apis/streamjob.dev/v1alpha1"


# -- fixtures --------------------------------------------------------------------------------------


def sj_path(namespace: str, name: str = "") -> str:
    base = f"{GROUP_PATH}/namespaces/{namespace}/streamjobs"
    return f"{base}/{name}" if name else base


class OperatorProcess:
    """``streamjob-operator`` as a subprocess watching every namespace; can be killed and restarted.

    ``env`` adds to its environment (which holds the operator key): e.g. its own S3 credentials.
    """

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = {"STREAMJOB_OPERATOR_KEY": E2E_OPERATOR_KEY, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = Path(sys.executable).parent / "streamjob-operator"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--kubeconfig", str(self.kubeconfig), "--standalone", "--metrics-port", "0",
                 "--poll-interval", "1"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def operator_s3_env(s3: S3Endpoint) -> dict[str, str]:
    """The operator's own storage credentials (it reads no job Secret by default)."""
    return {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}


@pytest.fixture(scope="module")
def operator(
    kube: Kube, node_agent: NodeAgent, s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    kube.apply(CRD_FILE.read_text())
    kube.apply(SNAPSHOT_CRD_FILE.read_text())
    kube.wait_for(lambda: kube.raw.get(GROUP_PATH), 30, "the streamjob.dev API")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = OperatorProcess(kube.kubeconfig, log, operator_s3_env(s3))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Job:
    """One StreamJob of the counting job in a fresh namespace, with S3 checkpoints and a file sink."""

    def __init__(self, kube: Kube, namespace: str, s3: S3Endpoint, out: Path, log: Path) -> None:
        self.kube, self.namespace, self.s3, self.out, self.log = kube, namespace, s3, out, log
        self.name = "counting"
        self.prefix = f"s3://{s3.bucket}/e2e-{uuid.uuid4().hex[:8]}"

    def storage(self, savepoints_uri: str | None = None) -> Json:
        """The job's storage section: checkpoints (and savepoints) under its prefix in S3."""
        return {
            "checkpointsUri": f"{self.prefix}/checkpoints",
            "savepointsUri": savepoints_uri or f"{self.prefix}/savepoints",
            "s3": {
                "endpoint": self.s3.endpoint_url,
                "region": self.s3.region,
                "pathStyle": True,
                "credentialsSecret": {"name": "s3-credentials"},
            },
        }

    def create(self, count: int, rate: int, **spec: Any) -> None:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials"},
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(self.s3.access_key.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(self.s3.secret_key.encode()).decode(),
            },
        }
        try:
            self.kube.raw.create(f"/api/v1/namespaces/{self.namespace}/secrets", secret)
        except KubeError as err:  # a second job in the namespace shares it
            if err.status != 409:
                raise
        body: Json = {
            "image": "streamjob:e2e",
            "entrypoint": ENTRYPOINT,
            "args": [f"file://{self.out}", str(count), str(rate)],
            "parallelism": 2,
            "storage": self.storage(),
            "restartPolicy": {"backoff": {"initialDelaySeconds": 0.5}},
        }
        body.update(spec)
        manifest = {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob", "metadata": {"name": self.name}}
        self.kube.raw.create(sj_path(self.namespace), {**manifest, "spec": body})

    def status(self) -> Json:
        return dict(self.kube.raw.get(sj_path(self.namespace, self.name)).get("status") or {})

    def wait(self, check: Callable[[Json], bool], what: str, timeout: float = 120.0) -> Json:
        def ready() -> Json | None:
            current = self.status()
            return current if current and check(current) else None

        try:
            return self.kube.wait_for(ready, timeout, what)
        except AssertionError as err:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"{err}\nstatus: {json.dumps(self.status(), indent=1)[:4000]}\n{tail}") from None

    def patch(self, spec: Json) -> None:
        self.kube.raw.merge_patch(sj_path(self.namespace, self.name), {"spec": spec})

    def pod(self, role: str, attempt: int, index: int = 0) -> str:
        return f"{self.name}-{role}-{attempt}" if role == "jobmaster" else f"{self.name}-worker-{attempt}-{index}"


@pytest.fixture
def job(kube: Kube, kube_namespace: str, s3: S3Endpoint, operator: OperatorProcess, tmp_path: Path) -> Iterator[Job]:
    out = tmp_path / "out"
    out.mkdir()
    handle = Job(kube, kube_namespace, s3, out, operator.log_path)
    yield handle
    # Leave no process behind: pods of the test bed share the host's ports.
    try:
        kube.raw.delete(sj_path(kube_namespace, handle.name))
        kube.wait_gone(sj_path(kube_namespace, handle.name), 60)
    except Exception:
        pass
    selector = f"streamjob.dev/job={handle.name}"
    kube.wait_for(
        lambda: not kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/pods", labelSelector=selector)["items"],
        60,
        "the job's pods to be gone",
    )


def running(s: Json) -> bool:
    return s.get("lifecycleState") == "Running" and not s.get("operation")


def checkpointed(s: Json, at_least: int = 1) -> bool:
    return running(s) and int((s.get("lastCheckpoint") or {}).get("id") or 0) >= at_least


def finished(s: Json) -> bool:
    return s.get("lifecycleState") == "Finished"


# -- tests -----------------------------------------------------------------------------------------


def test_runs_with_checkpoints_in_status_and_finishes_exactly(job: Job) -> None:
    job.create(count=4000, rate=400)
    status = job.wait(lambda s: checkpointed(s, 1), "Running with checkpoints")
    last = status["lastCheckpoint"]
    assert last["location"].startswith(job.prefix) and last["jobId"] == status["jobId"]
    job.wait(finished, "the job to finish", timeout=120)
    check_exact(job.out, 4000)


WORKER_KILLS = 10


def test_ten_worker_crashes_in_a_row_keep_the_jobmaster_pod_and_exact_output(job: Job, node_agent: NodeAgent) -> None:
    """Issue 14: the JobMaster stays up through worker failures; the operator replaces only the crashed pod.

    Each crash SIGKILLs a worker pod's processes; the JobMaster releases the surviving worker's tasks,
    the replacement pod registers, and the tasks run again from the latest checkpoint (two newer
    checkpoints complete before the next crash). The attempt, its JobMaster pod and the operator's
    restart count stay as they were, and the committed output holds every number exactly once.
    """
    count = 40_000
    # A fixed delay: the default exponential one grows to 60 s by the eighth crash within resetAfterSeconds.
    job.create(count=count, rate=500, restartPolicy={"strategy": "fixed", "backoff": {"initialDelaySeconds": 0.5}})
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    attempt = before["attempt"]
    jobmaster = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods/{job.pod('jobmaster', attempt)}")
    selector = f"streamjob.dev/job={job.name},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"

    def workers() -> list[Json]:
        return list(job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=selector)["items"])

    last = int(before["lastCheckpoint"]["id"])
    killed: list[str] = []
    for kill in range(WORKER_KILLS):
        names = sorted(p["metadata"]["name"] for p in workers())
        victim = names[kill % len(names)]
        node_agent.crash(job.namespace, victim)
        killed.append(victim)

        def replaced(s: Json, victim: str = victim, last: int = last) -> bool:
            pods = workers()
            fresh = [p for p in pods if p["metadata"]["name"] not in killed and (p.get("status") or {}).get("phase")]
            up = [p for p in fresh if p["status"]["phase"] == "Running"]
            return len(pods) == 2 and len(up) == 2 and checkpointed(s, last + 2)

        status = job.wait(replaced, f"crash {kill + 1}: {victim} replaced and two checkpoints after it", timeout=90)
        last = int(status["lastCheckpoint"]["id"])
        assert status["attempt"] == attempt and (status.get("restarts") or {}).get("count", 0) == 0, status
    now = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods/{job.pod('jobmaster', attempt)}")
    assert now["metadata"]["uid"] == jobmaster["metadata"]["uid"] and now["status"]["phase"] == "Running"
    assert all(name not in {p["metadata"]["name"] for p in workers()} for name in killed)
    final = job.wait(finished, "the job to finish", timeout=240)
    assert final["attempt"] == attempt
    check_exact(job.out, count)


def test_jobmaster_crash_recovers_from_storage_alone(job: Job, node_agent: NodeAgent) -> None:
    job.create(count=6000, rate=400)
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    node_agent.crash(job.namespace, job.pod("jobmaster", before["attempt"]))
    job.wait(lambda s: running(s) and s["attempt"] > before["attempt"], "recovery")
    assert "/chk-" in (job.status().get("restoreFrom") or "")
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 6000)


@pytest.mark.parametrize("mode", ["savepoint", "last-state"])
def test_rescale_two_to_three(job: Job, mode: str) -> None:
    job.create(count=8000, rate=400, upgradeMode=mode)
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    # With another field changed a rescale is an upgrade (parallelism alone rescales in place:
    # test_operator_rescale.py).
    job.patch({"parallelism": 3, "taskManager": {"labels": {"rescaled": "yes"}}})
    after = job.wait(lambda s: running(s) and s.get("parallelism") == 3, "rescaled to 3")
    restored = after.get("restoreFrom") or ""
    if mode == "savepoint":
        assert "savepoint-" in restored and after["jobId"] != before["jobId"]
        assert after["lastSavepoint"]["trigger"] == "upgrade"
    else:
        assert "/chk-" in restored and after["jobId"] == before["jobId"]
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 8000)


def test_savepoint_nonce_suspend_and_resume(job: Job) -> None:
    job.create(count=8000, rate=300)
    job.wait(lambda s: checkpointed(s, 1), "checkpoints")
    job.patch({"savepointTriggerNonce": 1})
    status = job.wait(lambda s: (s.get("nonces") or {}).get("savepoint") == 1, "the savepoint")
    assert status["savepointHistory"][0]["trigger"] == "manual"
    job.patch({"state": "suspended"})
    status = job.wait(lambda s: s.get("lifecycleState") == "Suspended", "suspended")
    assert "savepoint-" in status["restoreFrom"]
    pods = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=f"streamjob.dev/job={job.name}")
    assert pods["items"] == []
    time.sleep(1)
    job.patch({"state": "running"})
    job.wait(running, "resumed")
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 8000)


def test_broken_upgrade_rolls_back_with_state(job: Job) -> None:
    job.create(count=8000, rate=300, timeouts={"upgradeSeconds": 30})
    job.wait(lambda s: checkpointed(s, 2) and bool((s.get("deployment") or {}).get("stable")), "a stable job")
    job.patch({"entrypoint": "tests.e2e.nosuchmodule:build"})
    status = job.wait(
        lambda s: s.get("lifecycleState") == "RolledBack" and not s.get("operation") and "rolling back" in s["error"],
        "the rollback",
        timeout=150,
    )
    assert status["deployment"]["spec"]["entrypoint"] == ENTRYPOINT
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 8000)


def test_delete_completes_even_when_the_final_savepoint_fails(job: Job, node_agent: NodeAgent) -> None:
    job.create(count=100000, rate=200, savepointOnDeletion=True, timeouts={"savepointSeconds": 5})
    status = job.wait(lambda s: checkpointed(s, 1), "checkpoints")
    for index in range(2):  # workers gone: no savepoint can complete
        node_agent.crash(job.namespace, job.pod("worker", status["attempt"], index), sig=signal.SIGSTOP)
    job.kube.raw.delete(sj_path(job.namespace, job.name))
    job.kube.wait_gone(sj_path(job.namespace, job.name), 60)
    events = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/events")["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == job.name}
    assert "Deleted" in reasons


def test_operator_restart_mid_upgrade_completes_it_once(
    job: Job, operator: OperatorProcess, node_agent: NodeAgent
) -> None:
    job.create(count=8000, rate=300, upgradeMode="savepoint")
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    # Hold the workers so that the upgrade's savepoint cannot complete before the operator is
    # killed: the kill must land while the savepoint is requested but not yet taken.
    workers = [job.pod("worker", before["attempt"], index) for index in range(2)]
    for pod in workers:
        node_agent.crash(job.namespace, pod, sig=signal.SIGSTOP)
    # Another field changed with parallelism makes it an upgrade (parallelism alone rescales in place).
    job.patch({"parallelism": 3, "taskManager": {"labels": {"upgraded": "yes"}}})

    def savepoint_requested(s: Json) -> bool:
        request = s.get("snapshotRequest") or {}
        return (s.get("operation") or {}).get("step") == "snapshot" and bool(request.get("requestId"))

    try:
        job.wait(savepoint_requested, "the upgrade's savepoint to be requested", timeout=60)
        operator.stop(signal.SIGKILL)  # mid-operation: the intent is only in status
    finally:
        for pod in workers:
            node_agent.crash(job.namespace, pod, sig=signal.SIGCONT)
    operator.start()
    after = job.wait(lambda s: running(s) and s.get("parallelism") == 3, "the upgrade to complete")
    upgrades = [sp for sp in after.get("savepointHistory", []) if sp.get("trigger") == "upgrade"]
    assert len(upgrades) == 1, after.get("savepointHistory")
    assert after["restoreFrom"] == upgrades[0]["location"]
    client: Any = job.s3.client()  # type: ignore[no-untyped-call]
    prefix = job.prefix.removeprefix(f"s3://{job.s3.bucket}/") + "/savepoints/"
    listed = client.list_objects_v2(Bucket=job.s3.bucket, Prefix=prefix)
    metadata = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("/_metadata")]
    assert len(metadata) == 1, metadata
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 8000)
