"""Failover benchmark (issue 5): worker crash → the job processing records again, and savepoint upgrades.

Run: ``.venv/bin/python -m bench --only failover`` (results in bench/results/latest.{json,md}) or
``.venv/bin/python -m bench.failover [--crashes 10] [--upgrades 3] [--no-verify]`` (prints JSON).

It starts the e2e test bed itself — the Kubernetes control plane (``tests/cluster``), the node
agent that runs pods as local processes, a SeaweedFS S3 server — and ``streamjob-operator`` as a
subprocess with its default settings. The job (``bench/jobs/failover_job.py``) is a steady-rate
keyed running sum with checkpoints to S3 every second and an exactly-once FileSink; a ``Stamp``
step chained after the keyed state writes the wall-clock time at which each attempt's task opened
(state restored) and processed its first record. Pods are local processes on one machine, so one
clock serves every timestamp.

**Crashes.** Every crash is measured as the *first* restart of the default restart policy (no
``restartPolicy`` in the spec: exponential, initial delay 1 s, multiplier 2, reset after 600 s):
each crash gets a fresh StreamJob (in a fresh namespace) that has completed at least two
checkpoints, so its restart count is 0 when the worker dies. Crashing one job ten times would
measure the backoff (1, 2, 4, … s) instead, or need 600 s of calm before each crash to reset it.
t0 = just before the node agent SIGKILLs the worker pod's process group; t1 = the ``first`` stamp
of the new attempt (the first record through the restored keyed state). The breakdown times the
steps in between from watch events (pods, the StreamJob's status), the JobMaster's log and the
stamps. Afterwards the job runs to its end and its committed output is checked exactly once.

**Upgrades.** One job, upgraded ``--upgrades`` times by changing an argument the pipeline ignores
(a spec change in upgradeMode savepoint: stop-with-savepoint, redeploy from it): t0 = the patch,
then the savepoint, the new attempt Running at the new generation and its first record.

Called by ``bench.__main__`` (``run``, ``markdown``) or from the command line (``main``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import percentile
from bench.jobs.failover_job import check_exact

ROOT = Path(__file__).resolve().parent.parent
JOB_FILE = ROOT / "bench" / "jobs" / "failover_job.py"
CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
GROUP_PATH = "/apis/streamjob.dev/v1alpha1"
NAME = "fo"
IMAGE = "streamjob:bench"  # made known to the node agent: pods run the venv's streamjob
TARGET_S = 5.0
DESCRIPTION = ("operator on the e2e test bed: worker pod SIGKILL → first record processed by the restored "
               "attempt (fresh job per crash: the default restart policy's first retry), and savepoint upgrades")
Json = dict[str, Any]
Log = Callable[[str], None]

CRASH_MILESTONES = (
    ("pod_failed", "crashed pod reported Failed (node agent)"),
    ("detected", "operator recorded the restart in status"),
    ("old_pods_gone", "old attempt's pods deleted"),
    ("jm_pod_created", "new JobMaster pod created"),
    ("workers_created", "new worker pods created"),
    ("jm_started", "JobMaster process started"),
    ("jm_serving", "JobMaster serving REST"),
    ("workers_started", "worker processes started"),
    ("tasks_deployed", "slots registered, tasks deployed"),
    ("restored", "tasks opened (state restored), last subtask"),
    ("first_record", "first record processed (t1)"),
    ("all_processing", "every subtask processed a record"),
    ("status_running", "status Running again"),
)
UPGRADE_MILESTONES = (
    ("detected", "operator recorded the upgrade in status"),
    ("savepoint_requested", "stop-with-savepoint requested"),
    ("savepoint_done", "savepoint completed"),
    ("old_pods_gone", "old attempt's pods deleted"),
    ("jm_pod_created", "new JobMaster pod created"),
    ("workers_created", "new worker pods created"),
    ("jm_serving", "JobMaster serving REST"),
    ("tasks_deployed", "slots registered, tasks deployed"),
    ("status_running", "status Running at the new spec"),
    ("first_record", "first record processed"),
)


@dataclass(frozen=True)
class FailoverSpec:
    """Sizes of one benchmark run."""

    crashes: int = 10
    upgrades: int = 3
    rate: int = 500
    keys: int = 1000
    interval_ms: int = 1000
    parallelism: int = 2
    settle_s: float = 2.0
    seconds: int = 25
    verify: bool = True

    @property
    def crash_count(self) -> int:
        """Records of a crash run's job: ``seconds`` of input, so it ends (and is verified) soon after recovery."""
        return self.rate * self.seconds

    @property
    def upgrade_count(self) -> int:
        """Records of the upgrade run's job: enough input to outlast every upgrade."""
        return self.rate * (self.seconds + 12 * self.upgrades)


QUICK = FailoverSpec(crashes=1, upgrades=1, seconds=14)


# -- the test bed ------------------------------------------------------------------------------------


class Recorder:
    """Watches pods and StreamJobs of every namespace and keeps each event with its arrival time."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.events: list[Json] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def start(self) -> None:
        for path, kind in (("/api/v1/pods", "pod"), (f"{GROUP_PATH}/streamjobs", "sj")):
            threading.Thread(target=self._loop, args=(path, kind), daemon=True, name=f"watch-{kind}").start()

    def _loop(self, path: str, kind: str) -> None:
        version = ""
        while not self.stopping.is_set():
            try:
                if not version:
                    version = self.api.get(path)["metadata"]["resourceVersion"]
                for event in self.api.watch(path, version, timeout_seconds=30):
                    now = time.time()
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event.get("type") == "ERROR":
                        version = ""
                        break
                    if event.get("type") != "BOOKMARK":
                        with self.lock:
                            self.events.append({"t": now, "kind": kind, "type": event.get("type"), "object": obj})
            except Exception:  # the watch ends on timeouts and server hiccups: resume from a fresh list
                version = ""
                time.sleep(0.2)

    def select(self, namespace: str, since: float, kind: str) -> list[Json]:
        """Events of one kind in one namespace that arrived after ``since``."""
        with self.lock:
            return [e for e in self.events if e["kind"] == kind and e["t"] >= since
                    and (e["object"].get("metadata") or {}).get("namespace") == namespace]

    def forget(self, namespace: str) -> None:
        """Drops a finished run's events."""
        with self.lock:
            self.events = [e for e in self.events if (e["object"].get("metadata") or {}).get("namespace") != namespace]


class Testbed:
    """Control plane, node agent, S3 server, the CRD and the operator, started and stopped together."""

    def __init__(self, root: Path, log: Log) -> None:
        self.root = root
        self.log = log
        self.plane: Any = None
        self.agent: Any = None
        self.s3: Any = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.recorder: Recorder | None = None
        self.api: Any = None
        self.operator_log = root / "operator.log"

    def start(self) -> None:
        from tests.cluster import images
        from tests.cluster.controlplane import ControlPlane, build
        from tests.cluster.kubeapi import KubeApi
        from tests.cluster.node_agent import NodeAgent
        from tests.support.s3server import SeaweedServer

        self.log("  failover: starting the test bed (control plane, node agent, S3, operator)")
        binary = build("controlplane", self.root / "build")
        self.plane = ControlPlane(binary, self.root / "controlplane")
        state = self.plane.start()
        self.kubeconfig = state.kubeconfig
        self.api = KubeApi(str(state.kubeconfig))
        self.wait(lambda: self.api.get("/api/v1/namespaces/default/serviceaccounts/default"), 60, "service accounts")
        self.agent = NodeAgent(kubeconfig=str(state.kubeconfig), root=self.root / "node-agent",
                               known_images=[*images.default_known(), IMAGE])
        self.agent.start()
        self.s3 = SeaweedServer(self.root / "s3")
        self.s3.start()
        import yaml

        self.api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(CRD_FILE.read_text()))
        self.wait(lambda: self.api.get(GROUP_PATH), 30, "the streamjob.dev API")
        self.recorder = Recorder(self.api)
        self.recorder.start()
        binary_op = Path(sys.executable).parent / "streamjob-operator"
        with self.operator_log.open("ab") as out:
            self.operator = subprocess.Popen(
                [str(binary_op), "--kubeconfig", str(state.kubeconfig), "--standalone", "--metrics-port", "0"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True)

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stopping.set()
        if self.operator is not None and self.operator.poll() is None:
            os.killpg(self.operator.pid, signal.SIGTERM)
            try:
                self.operator.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.operator.pid, signal.SIGKILL)
        for part in (self.agent, self.s3, self.plane):
            if part is not None:
                try:
                    part.stop()
                except Exception as err:  # best effort: the next part must still stop
                    self.log(f"  failover: stopping {type(part).__name__} failed: {err}")

    @staticmethod
    def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except Exception as err:  # KubeError 404 while objects appear
                last = err
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))

    def namespace(self, prefix: str) -> str:
        """A fresh namespace with the S3 credentials Secret."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.wait(lambda: self.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, "service account")
        endpoint = self.s3.endpoint()
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
                  "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(endpoint.access_key.encode()).decode(),
                           "AWS_SECRET_ACCESS_KEY": base64.b64encode(endpoint.secret_key.encode()).decode()}}
        self.api.create(f"/api/v1/namespaces/{name}/secrets", secret)
        return name


class BenchJob:
    """One StreamJob of the failover job in its own namespace, with its output and stamps directories."""

    def __init__(self, bed: Testbed, namespace: str, spec: FailoverSpec, count: int) -> None:
        self.bed, self.namespace, self.spec, self.count = bed, namespace, spec, count
        self.dir = bed.root / "jobs" / namespace
        self.out = self.dir / "out"
        self.stamps = self.dir / "stamps"
        self.out.mkdir(parents=True)
        self.path = f"{GROUP_PATH}/namespaces/{namespace}/streamjobs/{NAME}"

    def args(self, tag: str) -> list[str]:
        s = self.spec
        return [self.out.as_uri(), str(self.stamps), str(self.count), str(s.rate), str(s.keys), str(s.interval_ms), tag]

    def create(self) -> None:
        endpoint = self.bed.s3.endpoint()
        prefix = f"s3://{endpoint.bucket}/failover-{self.namespace}"
        body: Json = {
            "image": IMAGE,
            "entrypoint": f"{JOB_FILE}:build",
            "args": self.args("v0"),
            "parallelism": self.spec.parallelism,
            "upgradeMode": "savepoint",
            "storage": {"checkpointsUri": f"{prefix}/checkpoints", "savepointsUri": f"{prefix}/savepoints",
                        "s3": {"endpoint": endpoint.endpoint_url, "region": endpoint.region, "pathStyle": True,
                               "credentialsSecret": {"name": "s3-credentials"}}},
        }  # no restartPolicy: the default policy is what is measured
        manifest = {"apiVersion": "streamjob.dev/v1alpha1", "kind": "StreamJob", "metadata": {"name": NAME},
                    "spec": body}
        self.bed.api.create(f"{GROUP_PATH}/namespaces/{self.namespace}/streamjobs", manifest)

    def status(self) -> Json:
        return dict(self.bed.api.get(self.path).get("status") or {})

    def wait(self, check: Callable[[Json], bool], what: str, timeout: float = 120.0) -> Json:
        def ready() -> Json | None:
            current = self.status()
            return current if current and check(current) else None

        try:
            result: Json = self.bed.wait(ready, timeout, what, interval=0.1)
        except TimeoutError as err:
            raise TimeoutError(f"{self.namespace}: {err}; status {json.dumps(self.status())[:1500]}") from None
        return result

    def stamps_of(self, attempt: int) -> list[Json]:
        found = []
        for path in sorted(self.stamps.glob(f"a{attempt}-s*.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return found

    def wait_processing(self, attempt: int, timeout: float) -> list[Json]:
        def every() -> list[Json] | None:
            stamps = self.stamps_of(attempt)
            done = len(stamps) == self.spec.parallelism and all("first" in s for s in stamps)
            return stamps if done else None

        try:
            result: list[Json] = self.bed.wait(every, timeout, f"attempt {attempt} to process records", 0.02)
        except TimeoutError as err:
            raise TimeoutError(f"{self.namespace}: {err}; status {json.dumps(self.status())[:1500]}") from None
        return result

    def delete(self) -> None:
        try:
            self.bed.api.delete(self.path)
            self.bed.wait(lambda: not self._exists(), 60, "the StreamJob's deletion")
            self.bed.wait(lambda: not self.bed.api.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"], 60,
                          "the job's pods to go")
            self.bed.api.delete(f"/api/v1/namespaces/{self.namespace}")
        except Exception as err:  # cleanup is best effort; the next run uses a fresh namespace
            self.bed.log(f"  failover: cleaning up {self.namespace} failed: {err}")

    def _exists(self) -> bool:
        try:
            self.bed.api.get(self.path)
        except Exception:
            return False
        return True

    def verify(self, timeout: float) -> str | None:
        """Waits for the job to finish and checks its committed output; None when exact."""
        self.wait(lambda s: s.get("lifecycleState") == "Finished", "the job to finish", timeout)
        return check_exact(self.out, self.count, self.spec.keys)


def _running(s: Json, attempt: int | None = None) -> bool:
    ok = s.get("lifecycleState") == "Running" and not s.get("operation")
    return ok and (attempt is None or s.get("attempt") == attempt)


def _checkpointed(s: Json, at_least: int) -> bool:
    last = s.get("lastCheckpoint") or {}
    return _running(s) and last.get("jobId") == s.get("jobId") and int(last.get("id") or 0) >= at_least


# -- timelines -----------------------------------------------------------------------------------------


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(path: Path, needle: str) -> float | None:
    """Wall-clock time of the first log line containing ``needle`` (Python logging's asctime, local time)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = _LOG_TIME.match(line)
        if match and needle in line:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def _pod_times(events: list[Json], name: str) -> dict[str, float]:
    """First arrival of: the pod's creation, phase Running, a terminal phase, its deletion."""
    out: dict[str, float] = {}
    for e in events:
        if e["object"]["metadata"]["name"] != name:
            continue
        phase = (e["object"].get("status") or {}).get("phase")
        if e["type"] == "ADDED":
            out.setdefault("created", e["t"])
        if phase == "Running":
            out.setdefault("running", e["t"])
        if phase in ("Failed", "Succeeded"):
            out.setdefault("ended", e["t"])
        if e["type"] == "DELETED":
            out.setdefault("deleted", e["t"])
    return out


def _sj_first(events: list[Json], check: Callable[[Json], bool]) -> float | None:
    return next((e["t"] for e in events if e["type"] != "DELETED" and check(e["object"].get("status") or {})), None)


def _pods_timeline(bed: Testbed, job: BenchJob, since: float, old: int, new: int) -> dict[str, float | None]:
    """Milestones of the attempt change ``old`` → ``new`` from pod events and the JobMaster's log."""
    assert bed.recorder is not None
    pods = bed.recorder.select(job.namespace, since, "pod")
    workers = [f"{NAME}-worker-{new}-{i}" for i in range(job.spec.parallelism)]
    old_pods = [f"{NAME}-jobmaster-{old}"] + [f"{NAME}-worker-{old}-{i}" for i in range(job.spec.parallelism)]
    old_times = [_pod_times(pods, p).get("deleted") for p in old_pods]
    jm = _pod_times(pods, f"{NAME}-jobmaster-{new}")
    worker_times = [_pod_times(pods, w) for w in workers]
    jm_log = bed.agent.log_path(job.namespace, f"{NAME}-jobmaster-{new}")

    def last(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    return {
        "old_pods_gone": last(old_times),
        "jm_pod_created": jm.get("created"),
        "jm_started": jm.get("running"),
        "jm_serving": _log_time(jm_log, "serving the REST API"),
        "workers_created": last([w.get("created") for w in worker_times]),
        "workers_started": last([w.get("running") for w in worker_times]),
        "tasks_deployed": _log_time(jm_log, "event running"),
    }


def _relative(t0: float, points: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (round(v - t0, 3) if v is not None else None) for k, v in points.items()}


# -- the measurements ----------------------------------------------------------------------------------


def measure_crash(bed: Testbed, spec: FailoverSpec, index: int, log: Log) -> Json:
    """One fresh job, one worker crash after two checkpoints: the milestones in seconds after the SIGKILL."""
    namespace = bed.namespace(f"bench-fo-crash{index}")
    job = BenchJob(bed, namespace, spec, count=spec.crash_count)
    load = os.getloadavg()[0]
    try:
        job.create()
        before = job.wait(lambda s: _checkpointed(s, 2), "two checkpoints", 180)
        old = int(before["attempt"])
        job.wait_processing(old, 30)
        time.sleep(spec.settle_s)
        if (job.status().get("restarts") or {}).get("count"):
            raise RuntimeError("the job restarted before the crash: not a first retry")
        victim = f"{NAME}-worker-{old}-0"
        t0 = time.time()
        bed.agent.crash(namespace, victim)
        stamps = job.wait_processing(old + 1, 120)
        after = job.wait(lambda s: _running(s, old + 1), "status Running", 120)
        assert bed.recorder is not None
        sj = bed.recorder.select(namespace, t0, "sj")
        pods = bed.recorder.select(namespace, t0, "pod")
        points: dict[str, float | None] = {
            "pod_failed": _pod_times(pods, victim).get("ended"),
            "detected": _sj_first(sj, lambda s: (s.get("operation") or {}).get("kind") == "restart"),
            **_pods_timeline(bed, job, t0, old, old + 1),
            "restored": max(s["open"] for s in stamps),
            "first_record": min(s["first"] for s in stamps),
            "all_processing": max(s["first"] for s in stamps),
            "status_running": _sj_first(sj, lambda s: _running(s, old + 1)),
        }
        run: Json = {
            "namespace": namespace, "attempt": old + 1, "restarts": (after.get("restarts") or {}).get("count"),
            "restored_from": after.get("restoreFrom"),
            "checkpoint_before": (before.get("lastCheckpoint") or {}).get("id"),
            "load_average_before": round(load, 2), "milestones_s": _relative(t0, points),
            "crash_to_processing_s": round(points["first_record"] - t0, 3),  # type: ignore[operator]
        }
        log(f"  failover crash {index + 1}/{spec.crashes}: processing again after {run['crash_to_processing_s']:.2f} s "
            f"(restored {run['restored_from'] and run['restored_from'].rsplit('/', 2)[-2]}, load {load:.2f})")
        if spec.verify:
            problem = job.verify(240)
            run["exactly_once"] = problem is None
            if problem:
                run["exactly_once_error"] = problem
                log(f"  failover crash {index + 1}: OUTPUT NOT EXACT: {problem}")
        return run
    finally:
        job.delete()
        if bed.recorder is not None:
            bed.recorder.forget(namespace)


def _one_upgrade(bed: Testbed, job: BenchJob, number: int) -> Json:
    """Upgrade ``number``: waits for a stable job, changes its spec, times the way to the new attempt."""
    before = job.wait(lambda s: _checkpointed(s, 1) and bool((s.get("deployment") or {}).get("stable")),
                      "a stable job", 180)
    old = int(before["attempt"])
    job.wait_processing(old, 30)
    time.sleep(job.spec.settle_s)
    load = os.getloadavg()[0]
    generation = int(bed.api.get(job.path)["metadata"]["generation"]) + 1

    def upgraded(s: Json) -> bool:
        return _running(s) and (s.get("deployment") or {}).get("generation") == generation

    t0 = time.time()
    bed.api.merge_patch(job.path, {"spec": {"args": job.args(f"v{number}")}})
    job.wait(upgraded, "Running at the new spec", 180)
    new = int(job.status()["attempt"])
    stamps = job.wait_processing(new, 60)
    assert bed.recorder is not None
    sj = bed.recorder.select(job.namespace, t0, "sj")
    points: dict[str, float | None] = {
        "detected": _sj_first(sj, lambda s: (s.get("operation") or {}).get("kind") == "upgrade"),
        "savepoint_requested": _sj_first(sj, lambda s: bool((s.get("snapshotRequest") or {}).get("requestId"))),
        "savepoint_done": _sj_first(sj, lambda s: (s.get("operation") or {}).get("step") == "teardown"),
        **_pods_timeline(bed, job, t0, old, new),
        "status_running": _sj_first(sj, upgraded),
        "first_record": min(s["first"] for s in stamps),
    }
    running = points["status_running"]
    return {"namespace": job.namespace, "attempt": new, "restored_from": job.status().get("restoreFrom"),
            "load_average_before": round(load, 2), "milestones_s": _relative(t0, points),
            "to_running_s": round(running - t0, 3) if running is not None else None,
            "to_first_record_s": round(min(s["first"] for s in stamps) - t0, 3)}


def measure_upgrades(bed: Testbed, spec: FailoverSpec, log: Log) -> list[Json]:
    """``spec.upgrades`` savepoint upgrades of one job: milestones in seconds after the spec change."""
    namespace = bed.namespace("bench-fo-upgrade")
    job = BenchJob(bed, namespace, spec, count=spec.upgrade_count)
    runs: list[Json] = []
    try:
        job.create()
        for number in range(1, spec.upgrades + 1):
            run = _one_upgrade(bed, job, number)
            runs.append(run)
            log(f"  failover upgrade {number}/{spec.upgrades}: Running after {run['to_running_s']} s, "
                f"first record after {run['to_first_record_s']} s (load {run['load_average_before']:.2f})")
        if spec.verify and runs:
            problem = job.verify(300)
            runs[-1]["exactly_once"] = problem is None
            if problem:
                runs[-1]["exactly_once_error"] = problem
                log(f"  failover upgrades: OUTPUT NOT EXACT: {problem}")
        return runs
    finally:
        job.delete()
        if bed.recorder is not None:
            bed.recorder.forget(namespace)


def _stats(values: list[float]) -> Json:
    return {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9), "max": max(values) if values else None,
            "n": len(values)}


def summarise(crashes: list[Json], upgrades: list[Json]) -> Json:
    """Percentiles of every milestone; the target verdict."""
    def milestones(runs: list[Json], names: tuple[tuple[str, str], ...]) -> Json:
        return {key: _stats([r["milestones_s"][key] for r in runs if r["milestones_s"].get(key) is not None])
                for key, _ in names}

    headline = _stats([r["crash_to_processing_s"] for r in crashes])
    exact = [r.get("exactly_once") for r in [*crashes, *upgrades] if "exactly_once" in r]
    return {
        "crash_to_processing_s": headline,
        "crash_milestones_s": milestones(crashes, CRASH_MILESTONES),
        "upgrade_to_running_s": _stats([r["to_running_s"] for r in upgrades if r.get("to_running_s") is not None]),
        "upgrade_to_first_record_s": _stats([r["to_first_record_s"] for r in upgrades]),
        "upgrade_milestones_s": milestones(upgrades, UPGRADE_MILESTONES),
        "target_s": TARGET_S,
        "target_met": headline["p50"] is not None and headline["p50"] <= TARGET_S,
        "exactly_once": all(exact) if exact else None,
        "load_average_before": [r["load_average_before"] for r in [*crashes, *upgrades]],
    }


def run(quick: bool = False, log: Log = print, spec: FailoverSpec | None = None) -> Json:
    """Starts the test bed, measures, stops it; the results entry (errors listed, never raised)."""
    spec = spec or (QUICK if quick else FailoverSpec())
    root = Path(tempfile.mkdtemp(prefix="streamjob-bench-failover-"))
    bed = Testbed(root, log)
    crashes: list[Json] = []
    upgrades: list[Json] = []
    errors: list[str] = []
    started = time.monotonic()
    try:
        bed.start()
        for index in range(spec.crashes):
            try:
                crashes.append(measure_crash(bed, spec, index, log))
            except Exception as err:
                errors.append(f"crash {index + 1}: {type(err).__name__}: {err}")
                log(f"  failover crash {index + 1}: FAILED: {err}")
        if spec.upgrades:
            try:
                upgrades = measure_upgrades(bed, spec, log)
            except Exception as err:
                errors.append(f"upgrades: {type(err).__name__}: {err}")
                log(f"  failover upgrades: FAILED: {err}")
    except Exception as err:
        errors.append(f"test bed: {type(err).__name__}: {err}")
        log(f"  failover: the test bed did not start: {err}")
    finally:
        bed.stop()
    if not errors and os.environ.get("STREAMJOB_BENCH_KEEP") != "1":
        shutil.rmtree(root, ignore_errors=True)
    else:
        log(f"  failover: logs kept in {root}")
    return {"description": DESCRIPTION, "spec": asdict(spec), "crashes": crashes, "upgrades": upgrades,
            "errors": errors, "elapsed_s": round(time.monotonic() - started, 1),
            "summary": summarise(crashes, upgrades) if crashes or upgrades else None}


# -- the report ----------------------------------------------------------------------------------------


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(section: Json) -> str:
    """The failover section of latest.md."""
    s = section.get("summary")
    lines = ["", "## Failover on the test bed (issue 5)", "", section["description"] + ".", ""]
    if s is None:
        return "\n".join([*lines, "No measurement: " + "; ".join(e[:300] for e in section.get("errors") or ["–"]), ""])
    spec = section["spec"]
    head = s["crash_to_processing_s"]
    loads = s["load_average_before"]
    met = "yes" if s["target_met"] else "NO"
    lines += [
        f"Job: parallelism {spec['parallelism']}, {spec['rate']} records/s, {spec['keys']} keys of keyed state, "
        f"checkpoints to S3 every {spec['interval_ms']} ms, exactly-once FileSink; operator with its default "
        f"settings, default restart policy. Load average before the runs: "
        f"{min(loads):.1f}–{max(loads):.1f}. Exactly-once output after every run: "
        f"{'yes' if s['exactly_once'] else ('–' if s['exactly_once'] is None else 'NO')}.",
        "",
        "| target | measured | met |", "|---|---|---|",
        f"| crash → processing again ≤ {s['target_s']:.0f} s (p50 over {head['n']} crashes) "
        f"| p50 {_f(head['p50'])} s, p90 {_f(head['p90'])} s, max {_f(head['max'])} s | {met} |",
        "",
        "Where the time goes (seconds after the SIGKILL; each milestone's own percentiles):", "",
        "| milestone | p50 | p90 | max |", "|---|---:|---:|---:|",
    ]
    for key, what in CRASH_MILESTONES:
        m = s["crash_milestones_s"][key]
        lines.append(f"| {what} | {_f(m['p50'])} | {_f(m['p90'])} | {_f(m['max'])} |")
    up, first = s["upgrade_to_running_s"], s["upgrade_to_first_record_s"]
    if first["n"]:
        lines += ["", f"Savepoint upgrades ({first['n']} runs; seconds after the spec change): Running at the new "
                  f"spec p50 {_f(up['p50'])} s (max {_f(up['max'])} s), first record p50 {_f(first['p50'])} s "
                  f"(max {_f(first['max'])} s).", "", "| milestone | p50 | max |", "|---|---:|---:|"]
        for key, what in UPGRADE_MILESTONES:
            m = s["upgrade_milestones_s"][key]
            lines.append(f"| {what} | {_f(m['p50'])} | {_f(m['max'])} |")
    if section.get("errors"):
        lines += ["", "Errors:", ""] + [f"- {e.splitlines()[0][:300]}" for e in section["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measures and prints the results as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.splitlines()[0])
    p.add_argument("--crashes", type=int, default=FailoverSpec.crashes)
    p.add_argument("--upgrades", type=int, default=FailoverSpec.upgrades)
    p.add_argument("--no-verify", action="store_true", help="skip waiting for the end and the exactly-once check")
    args = p.parse_args(argv)
    spec = FailoverSpec(crashes=args.crashes, upgrades=args.upgrades, verify=not args.no_verify)
    section = run(log=lambda text: print(text, file=sys.stderr, flush=True), spec=spec)
    print(json.dumps(section, indent=1))
    print(markdown(section), file=sys.stderr)
    return 1 if section["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
