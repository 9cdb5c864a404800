"""A Finished job brought back restores its final checkpoint and finishes again, on the test bed.

The counting job runs to its end (all sources at end of input, a final checkpoint). Changing
``restartNonce`` (or the spec) revives it: the new attempt restores that checkpoint, has nothing
left to process and ends as it starts. The operator must report Finished, with no restart and the
committed output unchanged and exact. Before, the operation's verify step waited in Deploying for
a Running job until its timeout, or took the JobMaster's FINISHED for a failed start and restarted
it again and again from the same checkpoint. Whether the operator sees the attempt running for a
moment is a race; the test takes it out by pausing the operator (SIGSTOP) from the moment the
attempt's worker pods exist until its JobMaster's pod has succeeded.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e import test_operator_jobs as jobs_e2e
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, OperatorProcess, finished
from tests.e2e.test_operator_state import events

pytestmark = pytest.mark.e2e

operator = jobs_e2e.operator
job = jobs_e2e.job


@pytest.mark.parametrize("change", [{"restartNonce": 1}, {"parallelism": 3}], ids=["restartNonce", "rescale"])
def test_a_finished_job_brought_back_restores_its_final_checkpoint_and_finishes_again(
    job: Job, operator: OperatorProcess, change: Json
) -> None:
    count = 2000
    job.create(count=count, rate=500, upgradeMode="last-state")
    first = job.wait(finished, "the job to finish", timeout=120)
    check_exact(job.out, count)
    final = first["lastCheckpoint"]["location"]
    attempt = first["attempt"] + 1
    pods_path = f"/api/v1/namespaces/{job.namespace}/pods"

    def phases() -> dict[str, str]:
        pods = job.kube.raw.get(pods_path, labelSelector=f"streamjob.dev/job={job.name}")["items"]
        return {
            p["metadata"]["name"]: p.get("status", {}).get("phase", "")
            for p in pods
            if p["metadata"]["labels"].get("streamjob.dev/attempt") == str(attempt)
        }

    job.patch(change)
    assert operator.proc is not None
    workers = {job.pod("worker", attempt, index) for index in range(int(change.get("parallelism", 2)))}
    job.kube.wait_for(lambda: workers <= set(phases()), 60, "the new attempt's workers", 0.02)
    os.killpg(operator.proc.pid, signal.SIGSTOP)
    try:
        job.kube.wait_for(
            lambda: phases().get(job.pod("jobmaster", attempt)) == "Succeeded", 90, "the new attempt to end"
        )
    finally:
        os.killpg(operator.proc.pid, signal.SIGCONT)
    again = job.wait(
        lambda s: finished(s) and s["attempt"] > first["attempt"] and not s.get("operation"),
        "the revived job to finish again",
        timeout=60,  # well within timeouts.upgradeSeconds (300 s): no waiting it out
    )
    assert again["jobId"] == first["jobId"] and again["restoreFrom"].removesuffix("/_metadata") == final
    assert again["restarts"].get("count", 0) == 0 and not again.get("error")
    assert again["attempt"] == attempt, "one attempt: it was not restarted"
    finishes = [e for e in events(job) if e["reason"] == "JobFinished"]
    assert len(finishes) == 2, [e["message"] for e in finishes]
    assert not [e for e in events(job) if e["type"] == "Warning"], [e["message"] for e in events(job)]
    check_exact(job.out, count)
