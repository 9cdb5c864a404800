"""The root cause of a failure on the test bed: a job whose map raises, seen in status, an Event and the pod's log.

The job (``raising_job.py``) raises ``ValueError: bad record 300`` in its map (uid ``parse``) on every
attempt. The JobMaster reports it in ``GET /job``; the operator must put one line naming it in
``status.error`` (and ``status.lastFailure``), the traceback's lines in an ``AttemptFailed`` Warning,
and keep the failed attempt's pods so that ``kubectl logs`` shows the traceback after the job failed.
"""

from __future__ import annotations

import pytest

from tests.e2e import test_operator_jobs as jobs
from tests.e2e.raising_job import BAD
from tests.e2e.raising_job import ENTRYPOINT as RAISING
from tests.e2e.test_operator_images import events_until
from tests.e2e.test_operator_jobs import Job, Json

operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e

CAUSE = f"ValueError: bad record {BAD}"


def failed(s: Json) -> bool:
    return s.get("lifecycleState") == "Failed"


def test_a_map_that_raises_is_named_in_status_an_event_and_the_kept_pods_logs(job: Job) -> None:
    job.create(
        count=0,
        rate=0,
        entrypoint=RAISING,
        args=[f"file://{job.out}/raising"],
        parallelism=1,
        restartPolicy={"maxRestarts": 1, "backoff": {"initialDelaySeconds": 0.5}},
    )
    status = job.wait(failed, "the job to fail after its one restart", timeout=240)
    error = status["error"]
    assert CAUSE in error and "operator 'parse'" in error and "\n" not in error, error
    last = status["lastFailure"]
    assert last["exception"] == "ValueError" and last["operatorUid"] == "parse", last
    assert last["traceback"][-1] == CAUSE and any("raising_job.py" in line for line in last["traceback"]), last
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "False" and conditions["Stable"] == "False", status["conditions"]

    events = events_until(job, "JobFailed")  # posted right after the status write
    failures = [e for e in events if e["reason"] == "AttemptFailed"]
    assert len(failures) == 2 and all(e["type"] == "Warning" for e in failures), [e["reason"] for e in events]
    text = failures[-1]["message"]
    assert CAUSE in text and "raise ValueError" in text and "kubectl logs" in text, text

    kept = last["retainedPods"]
    assert kept and last["retainedUntil"], last
    worker = next(name for name in kept if "-worker-" in name)
    pod = job.kube.raw.get(f"/api/v1/namespaces/{job.namespace}/pods/{worker}")
    assert pod["status"]["phase"] in ("Failed", "Succeeded"), pod["status"]
    assert "streamjob.dev/job" not in pod["metadata"]["labels"], "a kept pod is no part of the job any more"
    logs = job.kube.kubectl("logs", "-n", job.namespace, worker).stdout
    assert "Traceback (most recent call last)" in logs and CAUSE in logs, logs[-2000:]

    # Deleting the StreamJob takes the kept pods with it.
    job.kube.raw.delete(jobs.sj_path(job.namespace, job.name))
    job.kube.wait_for(
        lambda: (
            not job.kube.raw.get(
                f"/api/v1/namespaces/{job.namespace}/pods", labelSelector=f"streamjob.dev/retained-for={job.name}"
            )["items"]
        ),
        60,
        "the kept pods to be deleted with the StreamJob",
    )
