"""Standby workers on the test bed (``spec.standbyWorkers``): the spare pod takes a crashed worker's place.

A StreamJob with ``standbyWorkers: 1`` runs one worker pod more than its slots need; its slot registers
with the JobMaster as an idle spare (``GET /job``'s ``spare_slots``, ``status.standbyWorkers``). Each
crash SIGKILLs a worker pod that holds a slot of the running attempt: the JobMaster redeploys from the
latest checkpoint onto the survivor and the spare (the spare's pod then holds a slot) without waiting
for the replacement pod, which registers as the next spare. The JobMaster pod, the attempt and the
operator's restart count stay; the committed output holds every number exactly once.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.cluster.node_agent import NodeAgent
from tests.e2e import test_operator_jobs as jobs_e2e
from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished

pytestmark = pytest.mark.e2e

# The fixtures of the jobs' e2e module: the operator subprocess and one counting job per test.
operator = jobs_e2e.operator
job = jobs_e2e.job

KILLS = 3


def job_overview(jobmaster_ip: str) -> Json:
    """``GET /job`` of the JobMaster (reading needs no token)."""
    with urllib.request.urlopen(f"http://{jobmaster_ip}:8081/job", timeout=5) as response:
        body: Json = json.loads(response.read())
    return body


def test_standby_pod_takes_over_three_worker_crashes_with_the_jobmaster_kept(job: Job, node_agent: NodeAgent) -> None:
    count = 20_000
    job.create(
        count=count,
        rate=500,
        standbyWorkers=1,
        restartPolicy={"strategy": "fixed", "backoff": {"initialDelaySeconds": 0.5}},
    )
    before = job.wait(lambda s: checkpointed(s, 2) and s.get("standbyWorkers") == 1, "checkpoints and a standby")
    attempt = before["attempt"]
    pods_path = f"/api/v1/namespaces/{job.namespace}/pods"
    jobmaster = job.kube.raw.get(f"{pods_path}/{job.pod('jobmaster', attempt)}")
    jm_ip = jobmaster["status"]["podIP"]
    selector = f"streamjob.dev/job={job.name},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"

    def workers() -> list[Json]:
        return list(job.kube.raw.get(pods_path, labelSelector=selector)["items"])

    def slot_hosts() -> set[str]:
        return {w["address"][0] for w in job_overview(jm_ip)["workers"]}

    last = int(before["lastCheckpoint"]["id"])
    killed: list[str] = []
    for kill in range(1, KILLS + 1):
        pods = workers()
        assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
        hosts = slot_hosts()
        active = sorted(p["metadata"]["name"] for p in pods if p["status"].get("podIP") in hosts)
        [spare] = [p for p in pods if p["status"].get("podIP") not in hosts]
        victim = active[kill % len(active)]
        node_agent.crash(job.namespace, victim)
        killed.append(victim)

        def recovered(s: Json, last: int = last, kill: int = kill) -> bool:
            pods = workers()
            up = [p for p in pods if p["metadata"]["name"] not in killed and p["status"].get("phase") == "Running"]
            overview = job_overview(jm_ip)
            return (
                len(pods) == 3
                and len(up) == 3
                and overview["restarts"] >= kill
                and overview["spare_slots"] == 1
                and s.get("standbyWorkers") == 1
                and checkpointed(s, last + 2)
            )

        status = job.wait(recovered, f"crash {kill}: {victim} taken over, a standby again, two checkpoints")
        last = int(status["lastCheckpoint"]["id"])
        assert status["attempt"] == attempt and (status.get("restarts") or {}).get("count", 0) == 0, status
        assert spare["status"]["podIP"] in slot_hosts(), f"crash {kill}: the standby pod {spare['metadata']['name']}"
    now = job.kube.raw.get(f"{pods_path}/{job.pod('jobmaster', attempt)}")
    assert now["metadata"]["uid"] == jobmaster["metadata"]["uid"] and now["status"]["phase"] == "Running"
    assert job_overview(jm_ip)["restarts"] == KILLS
    counted = job.wait(lambda s: (s.get("restarts") or {}).get("inPlace") == KILLS, "status.restarts.inPlace")
    assert (counted.get("restarts") or {}).get("count", 0) == 0, counted
    final = job.wait(finished, "the job to finish", timeout=240)
    assert final["attempt"] == attempt
    check_exact(job.out, count)
