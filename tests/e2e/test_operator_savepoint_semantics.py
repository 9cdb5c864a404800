"""An intermediate savepoint commits nothing: a crash right after one loses and duplicates nothing.

Flink >= 1.15 semantics (FLIP-193): a savepoint taken while the job keeps running
(``savepointTriggerNonce``) does not commit the two-phase-commit sinks' transactions and is not a
recovery point; the next checkpoint commits them. Before, the FileSink committed at the savepoint
and a worker crash before the next checkpoint restored the older checkpoint and committed the
records between the two a second time.
"""

from __future__ import annotations

from tests.cluster.node_agent import NodeAgent
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished, job, operator, running

__all__ = ["job", "operator"]  # the fixtures this module uses

INTERVAL_MS = 15_000  # long, so that the crash lands after the savepoint and before the next checkpoint


def test_worker_crash_right_after_a_savepoint_duplicates_nothing(job: Job, node_agent: NodeAgent) -> None:
    count = 12_000
    job.create(count=count, rate=300, args=[f"file://{job.out}", str(count), "300", str(INTERVAL_MS)])
    before = job.wait(lambda s: checkpointed(s, 1), "the first checkpoint", timeout=120)
    checkpoint = int(before["lastCheckpoint"]["id"])
    job.patch({"savepointTriggerNonce": 1})

    def savepoint_taken(s: Json) -> bool:
        return (s.get("nonces") or {}).get("savepoint") == 1 and bool(s.get("savepointHistory"))

    taken = job.wait(savepoint_taken, "the savepoint", timeout=60)
    assert int(taken["lastCheckpoint"]["id"]) == checkpoint, "a checkpoint completed before the crash"
    victim = job.pod("worker", taken["attempt"], 1)
    node_agent.crash(job.namespace, victim)
    # The JobMaster stays up and redeploys the tasks in place from the latest checkpoint (a savepoint is not a
    # recovery point); the operator replaces only the crashed worker's pod.
    attempt = taken["attempt"]
    selector = f"streamjob.dev/job={job.name},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"

    def replaced(s: Json) -> bool:
        pods = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=selector)["items"]
        up = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return running(s) and victim not in {p["metadata"]["name"] for p in pods} and len(up) == 2

    after = job.wait(replaced, "the crashed worker replaced", timeout=120)
    assert after["attempt"] == taken["attempt"], after
    job.wait(finished, "the job to finish", timeout=240)
    check_exact(job.out, count)
