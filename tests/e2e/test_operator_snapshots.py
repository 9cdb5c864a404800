"""StreamJobSnapshots on the test bed: lifecycle, disposal, ABANDONED, periodic retention, restore by name.

A real operator, API server, kubectl and S3 server; the pods run ``counting_job``. Retention is
checked on the objects in S3 (the savepoint directories stay bounded over many periodic savepoints),
and a restore by name is checked on the job's exact output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_operator_job_counting import check_exact
from tests.e2e.test_operator_jobs import GROUP_PATH, Job, Json, checkpointed, finished, job, operator, running

__all__ = ["job", "operator"]  # the fixtures this module uses

pytestmark = pytest.mark.e2e


def sjs_path(namespace: str, name: str = "") -> str:
    base = f"{GROUP_PATH}/namespaces/{namespace}/streamjobsnapshots"
    return f"{base}/{name}" if name else base


def create_snapshot(job: Job, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "streamjob.dev/v1alpha1",
        "kind": "StreamJobSnapshot",
        "metadata": {"name": name},
        "spec": {"jobReference": {"name": job.name}, **spec},
    }
    job.kube.apply(body, namespace=job.namespace)


def snapshot(job: Job, name: str) -> Json:
    return dict(job.kube.raw.get(sjs_path(job.namespace, name)))


def wait_state(job: Job, name: str, state: str, timeout: float = 120.0) -> Json:
    def reached() -> Json | None:
        body = snapshot(job, name)
        return body if (body.get("status") or {}).get("state") == state else None

    try:
        return job.kube.wait_for(reached, timeout, f"snapshot {name} {state}")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{snapshot(job, name)}\njob status: {job.status()}") from None


def s3_keys(job: Job, under: str) -> list[str]:
    """Object keys under an s3:// location of the job's bucket."""
    prefix = under.removeprefix(f"s3://{job.s3.bucket}/").rstrip("/") + "/"
    client = job.s3.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=job.s3.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def savepoint_dirs(job: Job) -> set[str]:
    """The savepoint directories holding objects under the job's savepoints root."""
    base = f"{job.prefix}/savepoints/{job.namespace}/{job.name}"
    start = len(base.removeprefix(f"s3://{job.s3.bucket}/")) + 1
    return {key[start:].split("/")[0] for key in s3_keys(job, base) if key[start:].startswith("savepoint-")}


def test_user_snapshot_lifecycle_disposal_and_periodic_retention(job: Job) -> None:
    count = 100_000  # never finishes within the test
    job.create(
        count=count,
        rate=200,
        args=[f"file://{job.out}", str(count), "200", "1000"],
        savepoints={"interval": "3s", "maxCount": 2},
    )
    job.wait(lambda s: checkpointed(s, 1), "the first checkpoint", timeout=180)
    create_snapshot(job, "mine")
    done = wait_state(job, "mine", "COMPLETED")
    path = done["status"]["path"]
    labels = done["metadata"]["labels"]
    assert labels["streamjob.dev/job"] == job.name and labels["streamjob.dev/trigger"] == "user", labels
    assert any(k.endswith("/_metadata") for k in s3_keys(job, path)), "the savepoint's files are in S3"
    table = job.kube.kubectl("get", "sjs", "-n", job.namespace, "-l", "streamjob.dev/trigger=user").stdout
    assert "mine" in table and "COMPLETED" in table and job.name in table, table

    # Periodic savepoints every 3 s with maxCount 2: count the savepoint directories in S3 over 8 cycles.
    seen: set[str] = set()
    peak = 0

    def cycles_done() -> bool:
        nonlocal peak
        items = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=periodic")["items"]
        seen.update(i["metadata"]["name"] for i in items)
        peak = max(peak, len(savepoint_dirs(job)))
        return len(seen) >= 8

    job.kube.wait_for(lambda: cycles_done() or None, 240, "8 periodic savepoints")
    # maxCount periodic, one just completed (expired next round), one being disposed of, one in flight
    # and the user's "mine": 6, whatever the number of cycles (8 without retention, and growing).
    assert peak <= 2 + 1 + 1 + 1 + 1, f"{peak} savepoint directories in S3: retention does not bound them"

    def retained() -> list[Json] | None:
        items = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=periodic")["items"]
        completed = [i for i in items if (i.get("status") or {}).get("state") == "COMPLETED"]
        return completed if len(completed) <= 2 else None

    job.kube.wait_for(retained, 60, "retention to keep at most 2 periodic snapshots")
    assert snapshot(job, "mine")["status"]["state"] == "COMPLETED"  # retention never deletes users' snapshots

    # Deleting the user's snapshot (not a restore point) deletes its files.
    job.kube.raw.delete(sjs_path(job.namespace, "mine"))
    job.kube.wait_gone(sjs_path(job.namespace, "mine"), 60)
    assert s3_keys(job, path) == [], "the disposed savepoint's files are gone"


def test_restore_by_snapshot_name_exact_and_in_use_disposal_refused_and_abandoned(job: Job) -> None:
    count = 6_000
    job.create(count=count, rate=150, args=[f"file://{job.out}", str(count), "150", "500"])
    job.wait(lambda s: checkpointed(s, 1), "the first checkpoint", timeout=180)
    job.patch({"state": "suspended"})
    suspended = job.wait(lambda s: s.get("lifecycleState") == "Suspended", "the suspension", timeout=120)
    taken = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=suspend")["items"]
    assert len(taken) == 1 and taken[0]["status"]["state"] == "COMPLETED", taken
    name = taken[0]["metadata"]["name"]
    assert taken[0]["status"]["path"] == suspended["restoreFrom"]

    # A snapshot asked of a suspended job is abandoned, not left pending.
    create_snapshot(job, "late")
    assert wait_state(job, "late", "ABANDONED", timeout=60)["status"]["error"].startswith("the job stopped")

    # The suspension's savepoint is what the job resumes from: its disposal is refused, the files kept.
    job.kube.raw.delete(sjs_path(job.namespace, name))
    refused = job.kube.wait_for(
        lambda: (snapshot(job, name).get("status") or {}).get("error") or None, 60, "the refusal in status"
    )
    assert "restore point of StreamJob" in refused, refused
    assert s3_keys(job, suspended["restoreFrom"]), "a restore point's files must stay"

    # Let it go while keeping the files, then start the job again from it by name: exact output.
    job.kube.raw.merge_patch(sjs_path(job.namespace, name), {"spec": {"disposeOnDelete": False}})
    job.kube.wait_gone(sjs_path(job.namespace, name), 60)
    assert s3_keys(job, suspended["restoreFrom"]), "disposeOnDelete: false keeps the files"
    create_snapshot(job, "golden", path=suspended["restoreFrom"], disposeOnDelete=False)
    assert wait_state(job, "golden", "COMPLETED", timeout=60)["status"]["path"] == suspended["restoreFrom"]
    job.kube.raw.delete(f"{GROUP_PATH}/namespaces/{job.namespace}/streamjobs/{job.name}")
    job.kube.wait_gone(f"{GROUP_PATH}/namespaces/{job.namespace}/streamjobs/{job.name}", 60)
    job.create(
        count=count,
        rate=150,
        args=[f"file://{job.out}", str(count), "150", "500"],
        restoreFrom={"snapshotName": "golden"},
    )
    resumed = job.wait(running, "the job restored by name", timeout=180)
    assert resumed["restoreFrom"] == suspended["restoreFrom"], resumed
    assert resumed["jobId"] != suspended["jobId"]
    # Once the new lineage has a checkpoint, the old lineage's checkpoints are deleted.
    job.wait(lambda s: s.get("lineagesCleaned") == resumed["jobId"], "the old lineage's cleanup", timeout=120)
    old_lineage = f"{job.prefix}/checkpoints/{job.namespace}/{job.name}/{suspended['jobId']}"
    job.kube.wait_for(lambda: not s3_keys(job, old_lineage) or None, 60, "the old lineage's files gone")
    assert s3_keys(job, f"{job.prefix}/checkpoints/{job.namespace}/{job.name}/{resumed['jobId']}")
    job.wait(finished, "the job to finish", timeout=300)
    check_exact(job.out, count)


def lineage_dirs(job: Job) -> set[str]:
    """The jobId directories holding objects under the job's checkpoints root."""
    base = f"{job.prefix}/checkpoints/{job.namespace}/{job.name}"
    start = len(base.removeprefix(f"s3://{job.s3.bucket}/")) + 1
    return {key[start:].split("/")[0] for key in s3_keys(job, base)}


def object_count(job: Job) -> tuple[int, int]:
    """Objects in S3 under the job's checkpoints root and under its savepoints root."""
    checkpoints = len(s3_keys(job, f"{job.prefix}/checkpoints/{job.namespace}/{job.name}"))
    return checkpoints, len(s3_keys(job, f"{job.prefix}/savepoints/{job.namespace}/{job.name}"))


def test_upgrades_and_savepoints_keep_s3_bounded(job: Job) -> None:
    """10 upgrades and at least 10 periodic savepoints: savepoints, lineages and objects in S3 stay bounded."""
    count = 100_000
    job.create(
        count=count,
        rate=200,
        args=[f"file://{job.out}", str(count), "200", "500"],
        savepoints={"interval": "3s", "maxCount": 2},
    )
    status = job.wait(lambda s: checkpointed(s, 1), "the first checkpoint", timeout=180)
    upgrades = 10
    periodic: set[str] = set()
    peak_savepoints = peak_lineages = 0
    objects: list[tuple[int, int]] = []
    for n in range(1, upgrades + 1):
        job.patch({"taskManager": {"annotations": {"example.com/rollout": str(n)}}})
        before = status["jobId"]
        status = job.wait(
            lambda s, before=before: checkpointed(s, 1) and s["jobId"] != before, f"upgrade {n}", timeout=180
        )
        current = status["jobId"]
        job.wait(lambda s, current=current: s.get("lineagesCleaned") == current, f"cleanup {n}", timeout=120)
        items = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=periodic")["items"]
        periodic.update(i["metadata"]["name"] for i in items)
        peak_savepoints = max(peak_savepoints, len(savepoint_dirs(job)))
        peak_lineages = max(peak_lineages, len(lineage_dirs(job)))
        objects.append(object_count(job))

    def enough_periodic() -> bool | None:
        items = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=periodic")["items"]
        periodic.update(i["metadata"]["name"] for i in items)
        objects.append(object_count(job))
        return len(periodic) >= upgrades or None

    job.kube.wait_for(enough_periodic, 120, f"{upgrades} periodic savepoints")
    # Without retention: 10 upgrade and 10+ periodic savepoint directories, 11 lineages, and the objects
    # growing with each. With it: maxCount of both kinds together, the restore point, one just completed
    # (expired next round), one being disposed of and one in flight.
    assert len(periodic) + upgrades >= 20
    assert peak_savepoints <= 2 + 1 + 1 + 1 + 1, f"{peak_savepoints} savepoint directories after {upgrades} upgrades"
    assert peak_lineages <= 2, f"{peak_lineages} checkpoint lineages after {upgrades} upgrades"
    assert lineage_dirs(job) == {status["jobId"]}
    # Objects: at most 6 savepoint directories and 2 lineages of at most 3 checkpoints, each about one
    # snapshot's objects. Without retention the 20+ savepoints alone would hold 20 times as many.
    per_snapshot = len(s3_keys(job, status["restoreFrom"]))
    assert per_snapshot > 0
    peak = max(c + s for c, s in objects)
    assert peak <= 12 * per_snapshot, f"{peak} objects in S3 (one snapshot has {per_snapshot}): {objects}"
    upgrade_snaps = job.kube.raw.get(sjs_path(job.namespace), labelSelector="streamjob.dev/trigger=upgrade")["items"]
    assert 1 <= len(upgrade_snaps) <= 3 and status["restoreFrom"] in {i["status"]["path"] for i in upgrade_snaps}


def test_bad_snapshot_and_savepoint_fields_are_refused_with_the_field_named(job: Job) -> None:
    def refused(manifest: Json) -> str:
        result = job.kube.kubectl("apply", "-n", job.namespace, "-f", "-", input=json.dumps(manifest), check=False)
        assert result.returncode != 0, f"accepted: {manifest}"
        return result.stderr

    snap: Json = {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJobSnapshot", "metadata": {"name": "bad"}}
    assert "spec.type" in refused({**snap, "spec": {"jobReference": {"name": "x"}, "type": "full"}})
    out = refused({**snap, "spec": {"jobReference": {"name": "x"}, "type": "checkpoint", "disposeOnDelete": True}})
    assert "disposeOnDelete cannot be true for a checkpoint" in out
    assert "backoffLimit" in refused({**snap, "spec": {"jobReference": {"name": "x"}, "backoffLimit": -1}})
    assert "spec.path" in refused({**snap, "spec": {"jobReference": {"name": "x"}, "path": "/tmp/x"}})
    assert "unknown field" in refused({**snap, "spec": {"jobReference": {"name": "x"}, "dispose": True}})
    sj: Json = {
        "apiVersion": "streamjob.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": "bad"},
        "spec": {"image": "i", "entrypoint": "m:f", "storage": job.storage()},
    }
    every = refused({**sj, "spec": {**sj["spec"], "savepoints": {"interval": "5 minutes"}}})
    assert "spec.savepoints.interval" in every, every
    both = refused({**sj, "spec": {**sj["spec"], "savepoints": {"interval": "5m", "cron": "0 * * * *"}}})
    assert "set either interval or cron" in both, both
    named = {**sj["spec"], "initialSavepointPath": "s3://b/x", "restoreFrom": {"snapshotName": "s"}}
    assert "set either initialSavepointPath or restoreFrom" in refused({**sj, "spec": named})
