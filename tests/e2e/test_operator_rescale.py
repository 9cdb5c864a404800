"""``kubectl scale`` on the test bed: a rescale in place, the JobMaster kept alive (issue 13, item 7).

``kubectl scale sj/counting --replicas=3`` and back to 1 through real kubectl: the operator creates the
extra worker pod(s) first, asks the JobMaster (``POST /rescale``), which stops with a savepoint and runs
the next attempt at the new parallelism on the registered slots; scaling down, it deletes the worker
pods whose slots the JobMaster let go. The JobMaster pod stays the same object (name and uid), the
output is exact, and the processing gap — the longest pause between two rows the job made, from the
rows' own timestamps — is measured and bounded.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import test_operator_jobs as jobs
from tests.e2e.test_operator_images import events_until, job_pods
from tests.e2e.test_operator_job_counting import check_exact, pauses_above
from tests.e2e.test_operator_jobs import Job, Json, checkpointed, finished, running, sj_path

# The operator (one per module, watching every namespace) and the counting job of test_operator_jobs.
operator = jobs.operator
job = jobs.job

pytestmark = pytest.mark.e2e

COUNT, RATE = 9000, 150
GAP_BOUND_S = 2.0
"""The issue's bound on the processing gap of a rescale in place on the test bed."""


def _jobmaster(job: Job) -> dict[str, Any]:
    [pod] = [p for p in job_pods(job) if p["metadata"]["labels"]["app.kubernetes.io/component"] == "jobmaster"]
    return pod


def _workers(job: Job) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in job_pods(job)
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        and not p["metadata"].get("deletionTimestamp")
    )


def _scale(job: Job, replicas: int, before: Json) -> Json:
    out = job.kube.kubectl("scale", "-n", job.namespace, f"sj/{job.name}", f"--replicas={replicas}").stdout
    assert "scaled" in out, out
    return job.wait(
        lambda s: running(s) and s.get("parallelism") == replicas and s["attempt"] == before["attempt"],
        f"the rescale to {replicas}",
        timeout=180,
    )


def test_kubectl_scale_rescales_in_place_with_exact_output(job: Job, capsys: pytest.CaptureFixture[str]) -> None:
    args = [f"file://{job.out}", str(COUNT), str(RATE), "300", "0", "1"]  # stamp: rows carry their time
    job.create(count=COUNT, rate=RATE, parallelism=1, args=args, upgradeMode="savepoint")
    before = job.wait(lambda s: checkpointed(s, 1) and s.get("parallelism") == 1, "a checkpoint at parallelism 1")
    scale_path = sj_path(job.namespace, job.name) + "/scale"
    scale = job.kube.raw.get(scale_path)
    assert scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    assert "streamjob.dev/job=counting" in scale["status"]["selector"]
    # Beyond maxParallelism (128 by default) the API server refuses the scale with the CRD's rule.
    refused = job.kube.kubectl("scale", "-n", job.namespace, "sj/counting", "--replicas=200", check=False)
    assert refused.returncode != 0 and "parallelism must not exceed maxParallelism" in refused.stderr, refused
    jobmaster = _jobmaster(job)["metadata"]

    up = _scale(job, 3, before)
    assert _jobmaster(job)["metadata"]["uid"] == jobmaster["uid"], "the JobMaster pod stays"
    assert up["jobId"] == before["jobId"] and up["deployment"]["spec"]["parallelism"] == 3
    assert len(_workers(job)) == 3, _workers(job)
    scale = job.kube.raw.get(scale_path)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    job.wait(lambda s: checkpointed(s, int(up["lastCheckpoint"]["id"]) + 1), "a checkpoint at parallelism 3")

    down = _scale(job, 1, up)
    now = _jobmaster(job)["metadata"]
    assert (now["name"], now["uid"]) == (jobmaster["name"], jobmaster["uid"]), "the JobMaster pod stays"
    job.kube.wait_for(lambda: len(_workers(job)) == 1, 60, "the surplus worker pods to go")
    assert not (down.get("restarts") or {}).get("count"), "a rescale is no restart"
    rescaled = [e["message"] for e in events_until(job, "Rescaled") if e["reason"] == "Rescaled"]
    assert any("from 1 to 3 in place" in m for m in rescaled), rescaled

    job.wait(finished, "the job to finish", timeout=240)
    check_exact(job.out, COUNT)
    pauses = pauses_above(job.out, 0.5)
    longest = sorted(pauses_above(job.out, 0.0), reverse=True)[:3]
    with capsys.disabled():
        shown = [round(p, 2) for p in longest]
        print(f"\nkubectl scale 1 -> 3 -> 1 in place: longest pauses between rows made: {shown} s")
    assert len(pauses) <= 2 + 2, f"more pauses than the two rescales (and checkpoints) explain: {pauses}"
    assert max(pauses, default=0.0) <= GAP_BOUND_S, f"processing gaps {pauses} above {GAP_BOUND_S} s"
