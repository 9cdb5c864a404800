"""A failure no restart can mend fails the StreamJob on the test bed instead of looping (the terminal contract).

The job (``unloadable_job.py``) imports in the JobMaster but raises at import in every worker pod.
The JobMaster classifies it final (``worker/failures.py``), says so in its termination message
(``worker/protocol/termination.py``), and the operator reads it from the pod and fails the job:
``Failed`` with the job's own message in ``status.error`` and a Warning, on the first attempt,
whatever the restart policy allows. Fixing the spec brings it back. (Restartable failures, such as a
SIGKILLed worker, still restart: ``test_operator_jobs.py``.)
"""

from __future__ import annotations

import time

import pytest

from streamjob.worker.protocol.termination import FINAL_MARKER
from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_images import events_of, events_until, job_pods
from tests.e2e.test_operator_job_counting import ENTRYPOINT as COUNTING
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, finished
from tests.e2e.unloadable_job import ENTRYPOINT as UNLOADABLE
from tests.e2e.unloadable_job import MESSAGE

# The operator (one per module, watching every namespace) and the job handle of test_operator_jobs.
operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e

#: How long the job's status must stay as it is once Failed: several operator rounds (poll interval 1 s)
#: and more than the restart backoff, so that a restart, were one planned, would show.
QUIET_S = 8.0


def failed(s: Json) -> bool:
    return s.get("lifecycleState") == "Failed"


def test_a_job_no_worker_can_load_fails_on_its_first_attempt_and_comes_back_once_fixed(
    job: Job, node_agent: NodeAgent
) -> None:
    started = time.monotonic()
    job.create(
        count=0,
        rate=0,
        entrypoint=UNLOADABLE,
        args=[f"file://{job.out}/unloadable"],
        restartPolicy={"maxRestarts": 100, "backoff": {"initialDelaySeconds": 0.5}},
    )
    status = job.wait(failed, "the job to fail for good", timeout=120)
    assert time.monotonic() - started < 120
    error = status["error"]
    assert MESSAGE in error and "cannot load the job" in error and "not restarted" in error, error
    assert status["attempt"] == 1 and status["restarts"]["count"] == 0, status
    # No restart loop: the status stays as it is over several rounds, and no attempt 2 is ever created.
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        now = job.status()
        assert failed(now) and now["attempt"] == 1 and now["restarts"]["count"] == 0, now
        assert all(p["metadata"]["labels"]["streamjob.dev/attempt"] == "1" for p in job_pods(job))
        time.sleep(0.5)
    events = events_until(job, "JobFailed")
    failures = [e for e in events if e["reason"] == "JobFailed"]
    assert len(failures) == 1 and failures[0]["type"] == "Warning" and failures[0]["message"] == error, failures
    assert not [e for e in events if e["reason"] == "Restarting"], [e["reason"] for e in events]
    # The JobMaster said so itself, in the termination message the operator read.
    term = node_agent.container_state(job.namespace, job.pod("jobmaster", 1))["terminated"]
    assert term["exitCode"] == 2 and term["message"].startswith(FINAL_MARKER) and MESSAGE in term["message"], term
    job.kube.wait_for(lambda: not job_pods(job), 30, "the failed job's pods to be deleted")

    # Fixing the spec brings it back (the lineage began empty and never checkpointed: it starts empty).
    job.patch({"entrypoint": COUNTING, "args": [f"file://{job.out}", "1500", "300"]})
    job.wait(finished, "the fixed job to run and finish", timeout=180)
    check_exact(job.out, 1500)
    assert [e["reason"] for e in events_of(job)].count("JobFailed") == 1
