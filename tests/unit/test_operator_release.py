"""The uninstall hook's logic (``operator/release.py``): suspend, wait (bounded), remove the finalizer."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from streamjob.operator.release import FINALIZER, at_rest, release, released
from streamjob.operator.resources.labels import RELEASED

pytestmark = pytest.mark.unit


def job(name: str, state: str, finalizers: list[str] | None = None) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "finalizers": finalizers if finalizers is not None else [FINALIZER]}
    return {"metadata": meta, "spec": {"state": "running"}, "status": {"lifecycleState": state}}


class FakeKube:
    """StreamJobs in a dict; a job told to suspend is Suspended after ``suspend_after`` reads (None: never)."""

    def __init__(self, jobs: list[dict[str, Any]], suspend_after: int | None = 1) -> None:
        self.jobs = {j["metadata"]["name"]: j for j in jobs}
        self.suspend_after = suspend_after
        self.reads: dict[str, int] = {}
        self.gets: dict[str, int] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.snapshots: dict[str, dict[str, Any]] = {}

    async def list_streamjobs(self, namespace: str | None, plural: str = "streamjobs") -> list[dict[str, Any]]:
        found = self.jobs if plural == "streamjobs" else self.snapshots
        return [copy.deepcopy(j) for j in found.values()]

    async def get_streamjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets[name] = self.gets.get(name, 0) + 1
        body = self.jobs.get(name)
        if body is None:
            return None
        if body["spec"].get("state") == "suspended" and self.suspend_after is not None:
            self.reads[name] = self.reads.get(name, 0) + 1
            if self.reads[name] >= self.suspend_after:
                body["status"]["lifecycleState"] = "Suspended"
        return copy.deepcopy(body)

    async def patch_streamjob(
        self, namespace: str, name: str, patch: dict[str, Any], plural: str = "streamjobs"
    ) -> None:
        self.patches.append((name, patch))
        body = (self.jobs if plural == "streamjobs" else self.snapshots)[name]
        body.setdefault("spec", {}).update(patch.get("spec", {}))
        meta = patch.get("metadata", {})
        body["metadata"].setdefault("annotations", {}).update(meta.get("annotations", {}))
        if "finalizers" in meta:
            body["metadata"]["finalizers"] = meta["finalizers"]


def test_the_release_patch_annotates_and_keeps_other_finalizers() -> None:
    patch = released(job("a", "Running", [FINALIZER, "other"]), "t")
    assert patch == {"metadata": {"annotations": {RELEASED: "t"}, "finalizers": ["other"]}}
    assert released(job("a", "Running", ["other"]), "t") == {"metadata": {"annotations": {RELEASED: "t"}}}
    assert at_rest(job("a", "Suspended")) and not at_rest(job("a", "Running"))
    busy = job("a", "Suspended")
    busy["status"]["operation"] = {"kind": "suspend"}
    assert not at_rest(busy)


def test_suspend_waits_for_every_job_then_releases_all() -> None:
    kube = FakeKube([job("run", "Running"), job("done", "Finished"), job("loose", "Running", [])], suspend_after=2)
    lines = asyncio.run(release(kube, [], suspend=True, timeout_s=10, poll_s=0.01))  # type: ignore[arg-type]
    assert kube.jobs["run"]["spec"]["state"] == "suspended" and kube.jobs["done"]["spec"]["state"] == "running"
    assert all(FINALIZER not in j["metadata"]["finalizers"] for j in kube.jobs.values())
    assert all(RELEASED in j["metadata"]["annotations"] for j in kube.jobs.values())
    assert "ns/run: released (Suspended)" in lines and "ns/done: released (Finished)" in lines
    assert "finalizers" not in dict(kube.patches)["loose"]["metadata"]  # nothing to remove


def test_a_job_that_never_suspends_is_released_after_the_timeout_and_named() -> None:
    kube = FakeKube([job("stuck", "Running")], suspend_after=None)
    lines = asyncio.run(release(kube, ["ns"], suspend=True, timeout_s=0.2, poll_s=0.01))  # type: ignore[arg-type]
    assert lines[0] == "ns/stuck: not suspended within 0.2s; released while running"
    assert kube.gets["stuck"] >= 3  # polled again while waiting, not given up at once
    assert FINALIZER not in kube.jobs["stuck"]["metadata"]["finalizers"]


def test_release_only_leaves_jobs_running() -> None:
    kube = FakeKube([job("run", "Running")])
    asyncio.run(release(kube, [], suspend=False, timeout_s=10))  # type: ignore[arg-type]
    assert kube.jobs["run"]["spec"]["state"] == "running"
    assert kube.jobs["run"]["metadata"]["finalizers"] == []


def test_snapshots_are_released_too_so_deleting_them_never_hangs() -> None:
    kube = FakeKube([job("a", "Suspended")])
    kube.snapshots["s1"] = {"metadata": {"name": "s1", "namespace": "ns", "finalizers": [FINALIZER]}}
    lines = asyncio.run(release(kube, [], suspend=False, timeout_s=1))  # type: ignore[arg-type]
    assert kube.snapshots["s1"]["metadata"]["finalizers"] == []
    assert RELEASED in kube.snapshots["s1"]["metadata"]["annotations"]
    assert "ns/s1: snapshot released (files kept)" in lines
