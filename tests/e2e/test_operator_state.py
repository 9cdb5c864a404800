"""State is never dropped silently, on the test bed with real jobs, S3 and the operator (docs/user-guide.md,
"When does a job start with empty state?").

- a Failed job brought back with ``restartNonce`` resumes its own jobId from its latest retained
  checkpoint, and its output is exact;
- a savepoint-mode upgrade whose savepoint fails, on a job without any checkpoint, is refused with
  a Warning and ``status.error``: no attempt with an empty state, the job keeps running, and
  ``upgradeMode: stateless`` is the way on;
- a first deploy from ``initialSavepointPath`` that fails (the savepoint holds state of an operator
  the job no longer has) and is fixed with ``allowNonRestoredState`` restores that savepoint, with
  exact output across both jobs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixtures import Kube
from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs_e2e
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, OperatorProcess, checkpointed, finished, running, sj_path
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.e2e

# The fixtures of the jobs' e2e module: the operator subprocess and one counting job per test.
operator = jobs_e2e.operator
job = jobs_e2e.job


def failed(s: Json) -> bool:
    return s.get("lifecycleState") == "Failed"


def events(sj: Job) -> list[Json]:
    items = sj.kube.raw.get(f"/api/v1/namespaces/{sj.namespace}/events")["items"]
    return [e for e in items if e["involvedObject"].get("name") == sj.name]


def latest_checkpoint_in_storage(sj: Job, job_id: str) -> str:
    """The highest ``chk-<n>`` with a ``_metadata`` under the jobId, listed from S3 directly."""
    client: Any = sj.s3.client()  # type: ignore[no-untyped-call]
    root = sj.prefix.removeprefix(f"s3://{sj.s3.bucket}/") + f"/checkpoints/{sj.namespace}/{sj.name}/{job_id}/"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=sj.s3.bucket, Prefix=root).get("Contents", [])]
    ids = [int(m.group(1)) for k in keys if (m := re.search(r"/chk-(\d+)/_metadata$", k))]
    assert ids, f"no completed checkpoint under {root}"
    return f"s3://{sj.s3.bucket}/{root}chk-{max(ids)}"


def test_failed_job_restarted_by_nonce_resumes_its_lineage_exactly(
    job: Job,
    node_agent: NodeAgent,
) -> None:
    job.create(count=6000, rate=400, restartPolicy={"maxRestarts": 0, "backoff": {"initialDelaySeconds": 0.5}})
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    node_agent.crash(job.namespace, job.pod("worker", before["attempt"], 1))
    down = job.wait(failed, "the job to give up (maxRestarts 0)")
    assert "gave up after 0 restarts" in down["error"]
    latest = latest_checkpoint_in_storage(job, before["jobId"])
    job.patch({"restartNonce": 1})
    after = job.wait(lambda s: running(s) and s["attempt"] > down["attempt"], "the job to be back")
    assert after["jobId"] == before["jobId"], "a restart after Failed keeps the lineage"
    assert after["restoreFrom"].rstrip("/").removesuffix("/_metadata") == latest
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 6000)


def test_savepoint_upgrade_without_any_checkpoint_is_refused_and_the_job_keeps_running(job: Job) -> None:
    # No checkpoint for an hour, and savepoints go where nothing can be written: the savepoint fails.
    unwritable = "file:///proc/streamjob-no-savepoints"
    job.create(count=100000, rate=200, checkpoint={"intervalMs": 3600000}, storage=job.storage(unwritable))
    before = job.wait(lambda s: running(s) and s.get("jobState") == "RUNNING", "Running")
    job.patch({"parallelism": 3})
    refused = job.wait(
        lambda s: "nothing to restore" in (s.get("error") or "") and not s.get("operation"), "the refusal", timeout=150
    )
    assert "upgradeMode: stateless" in refused["error"]
    assert refused["lifecycleState"] == "Running" and refused["attempt"] == before["attempt"]
    assert refused["deployment"]["spec"]["parallelism"] == 2 and not refused.get("lastCheckpoint")
    pods = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=f"streamjob.dev/job={job.name}")
    attempts = {p["metadata"]["labels"]["streamjob.dev/attempt"] for p in pods["items"]}
    assert attempts == {str(before["attempt"])}, "no attempt was deployed with an empty state"
    assert all(p["status"].get("phase") == "Running" for p in pods["items"])
    warnings = [e for e in events(job) if e["reason"] == "NoState"]
    assert warnings and all(e["type"] == "Warning" for e in warnings)
    # The way on that the error names: the user accepts an empty state.
    job.patch({"upgradeMode": "stateless"})
    after = job.wait(lambda s: running(s) and s.get("parallelism") == 3, "the stateless upgrade")
    assert after["jobId"] != before["jobId"] and not after.get("restoreFrom") and not after.get("error")


def test_failed_initial_savepoint_deploy_fixed_with_allow_non_restored_state_restores_it(
    job: Job,
    kube: Kube,
    kube_namespace: str,
    s3: S3Endpoint,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    # A job with one more stateful operator (uid "extra") is stopped with a savepoint.
    first = Job(kube, kube_namespace, s3, job.out / "first", operator.log_path)
    first.name = "with-extra"
    first.out.mkdir()
    first.create(count=6000, rate=400, args=[f"file://{first.out}", "6000", "400", "300", "1"])
    first.wait(lambda s: checkpointed(s, 2), "checkpoints of the first job")
    first.patch({"state": "suspended"})
    savepoint = first.wait(lambda s: s.get("lifecycleState") == "Suspended", "the suspension")["restoreFrom"]
    assert "savepoint-" in savepoint
    kube.raw.delete(sj_path(kube_namespace, first.name))
    kube.wait_gone(sj_path(kube_namespace, first.name), 60)
    # The job without it, started from that savepoint, cannot restore it: it fails for good.
    second = job.out / "second"
    second.mkdir()
    job.create(
        count=6000,
        rate=400,
        args=[f"file://{second}", "6000", "400"],
        initialSavepointPath=savepoint,
        restartPolicy={"maxRestarts": 0, "backoff": {"initialDelaySeconds": 0.5}},
    )
    down = job.wait(failed, "the deploy from the savepoint to fail", timeout=150)
    job.patch({"allowNonRestoredState": True})
    after = job.wait(lambda s: running(s) and s["attempt"] > down["attempt"], "the fixed deploy")
    assert after["restoreFrom"].rstrip("/").removesuffix("/_metadata") == savepoint.rstrip("/").removesuffix(
        "/_metadata"
    )
    assert after["jobId"] == down["jobId"]
    job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, 6000)  # the first job's output up to the savepoint, then the second's
