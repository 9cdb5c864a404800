"""A corrupt newest checkpoint on the test bed: skipped, reported once as a Warning, the previous one restored.

Real kube-apiserver, S3 server and job processes. The job goes down (a worker killed, no restarts
allowed); while it is down its newest ``chk-<n>`` in S3 gets a ``_metadata`` that does not parse —
the first bytes of the real one, as a torn or damaged write leaves it, planted as the checkpoint
after the newest completed one, so that no transaction was ever committed with it (replacing a
committed checkpoint's ``_metadata`` would make any restore replay output that its commit
already published: no operator can avoid that). Brought back with ``restartNonce``, the job must
restore the newest good checkpoint, finish with exact output, and the StreamJob must carry exactly
one ``CorruptCheckpointSkipped`` Warning and the skipped checkpoint in ``status.corruptCheckpoints``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs_e2e
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished, running
from tests.e2e.test_operator_state import events, failed, latest_checkpoint_in_storage

pytestmark = pytest.mark.e2e

operator = jobs_e2e.operator
job = jobs_e2e.job

REASON = "CorruptCheckpointSkipped"


def corrupt_warnings(sj: Job) -> list[Json]:
    return [e for e in events(sj) if e["reason"] == REASON]


def test_a_corrupt_newest_checkpoint_is_skipped_reported_once_and_the_previous_one_restored(
    job: Job, node_agent: NodeAgent
) -> None:
    count = 6000
    job.create(count=count, rate=400, restartPolicy={"maxRestarts": 0, "backoff": {"initialDelaySeconds": 0.5}})
    before = job.wait(lambda s: checkpointed(s, 2), "checkpoints")
    node_agent.crash(job.namespace, job.pod("worker", before["attempt"], 1))
    down = job.wait(failed, "the job to give up (maxRestarts 0)")
    good = latest_checkpoint_in_storage(job, down["jobId"])
    good_id = int(good.rsplit("chk-", 1)[1])
    corrupt_id = good_id + 1
    corrupt = good.rsplit("chk-", 1)[0] + f"chk-{corrupt_id}"
    client: Any = job.s3.client()  # type: ignore[no-untyped-call]
    key = good.removeprefix(f"s3://{job.s3.bucket}/") + "/_metadata"
    real = client.get_object(Bucket=job.s3.bucket, Key=key)["Body"].read()
    torn = real[: len(real) // 2]
    client.put_object(
        Bucket=job.s3.bucket, Key=corrupt.removeprefix(f"s3://{job.s3.bucket}/") + "/_metadata", Body=torn
    )

    # Reported while the job is down, before anything restores.
    reported = job.wait(lambda s: bool(s.get("corruptCheckpoints")), "the corrupt checkpoint in status", timeout=60)
    [entry] = reported["corruptCheckpoints"]
    assert (entry["location"], entry["id"], entry["jobId"]) == (corrupt, corrupt_id, down["jobId"])
    assert entry["reason"] and "\n" not in entry["reason"] and entry["reportedAt"]
    assert reported["lastCheckpoint"]["location"] == good

    job.patch({"restartNonce": 1})
    after = job.wait(lambda s: running(s) and s["attempt"] > down["attempt"], "the job to be back")
    assert after["jobId"] == down["jobId"]
    assert after["restoreFrom"].rstrip("/").removesuffix("/_metadata") == good
    done = job.wait(finished, "the job to finish", timeout=180)
    check_exact(job.out, count)

    warnings = corrupt_warnings(job)
    assert len(warnings) == 1, [w["message"] for w in warnings]
    [warning] = warnings
    assert warning["type"] == "Warning"
    message = warning["message"]
    assert f"checkpoint {corrupt_id} of job {down['jobId']} at {corrupt} is skipped: " in message
    assert entry["reason"] in message and f"checkpoint {good_id} ({good}) is used instead" in message
    assert [c["location"] for c in done["corruptCheckpoints"]] == [corrupt]
