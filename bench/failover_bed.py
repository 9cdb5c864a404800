"""The failover benchmark's test bed and probes: control plane, node agent, S3, operator, jobs, timelines.

``Testbed`` starts what ``tests/cluster`` provides (outside pytest) plus ``streamjob-operator`` as a
subprocess; ``Recorder`` keeps every pod and StreamJob watch event with its arrival time;
``BenchJob`` is one StreamJob of ``bench/jobs/failover_job.py`` in its own namespace; the timeline
helpers turn events, the JobMaster's log and the job's stamps into milestones. Used by
``bench/failover.py`` (which measures and reports).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.jobs.failover_job import check_exact

ROOT = Path(__file__).resolve().parent.parent
JOB_FILE = ROOT / "bench" / "jobs" / "failover_job.py"
CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
GROUP_PATH = "/apis/streamjob.dev/v1alpha1"
NAME = "fo"
IMAGE = "streamjob:bench"  # made known to the node agent: pods run the venv's streamjob
Json = dict[str, Any]
Log = Callable[[str], None]


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
    standby: int = 1
    """``spec.standbyWorkers`` of the jobs: a crash redeploys onto the idle standby worker at once."""
    restart_delay_s: float | None = None
    """``restartPolicy.backoff.initialDelaySeconds`` of the jobs (None: the default policy's 1 s)."""
    pythonpath: str | None = None  # A/B runs: the operator and the pods import streamjob from here

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
            return [
                e
                for e in self.events
                if e["kind"] == kind
                and e["t"] >= since
                and (e["object"].get("metadata") or {}).get("namespace") == namespace
            ]

    def forget(self, namespace: str) -> None:
        """Drops a finished run's events."""
        with self.lock:
            self.events = [e for e in self.events if (e["object"].get("metadata") or {}).get("namespace") != namespace]


class Testbed:
    """Control plane, node agent, S3 server, the CRD and the operator, started and stopped together."""

    def __init__(self, root: Path, log: Log, pythonpath: str | None = None) -> None:
        self.root = root
        self.pythonpath = pythonpath
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
        self.agent = NodeAgent(
            kubeconfig=str(state.kubeconfig),
            root=self.root / "node-agent",
            known_images=[*images.default_known(), IMAGE],
        )
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
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._operator_env(),
                start_new_session=True,
            )

    def _operator_env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The operator derives every job's secret from its key and refuses to start without one.
        env.setdefault("STREAMJOB_OPERATOR_KEY", secrets.token_hex(32))
        # It lists checkpoints with its own S3 credentials (it reads no job's Secret by default).
        assert self.s3 is not None
        endpoint = self.s3.endpoint()
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = endpoint.access_key, endpoint.secret_key
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

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
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials"},
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(endpoint.access_key.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(endpoint.secret_key.encode()).decode(),
            },
        }
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
            **({"standbyWorkers": self.spec.standby} if self.spec.standby else {}),
            "storage": {
                "checkpointsUri": f"{prefix}/checkpoints",
                "savepointsUri": f"{prefix}/savepoints",
                "s3": {
                    "endpoint": endpoint.endpoint_url,
                    "region": endpoint.region,
                    "pathStyle": True,
                    "credentialsSecret": {"name": "s3-credentials"},
                },
            },
        }  # no restartPolicy unless asked: the default policy is what is measured
        if self.spec.restart_delay_s is not None:
            body["restartPolicy"] = {"backoff": {"initialDelaySeconds": self.spec.restart_delay_s}}
        if self.spec.pythonpath:
            env = {"env": [{"name": "PYTHONPATH", "value": self.spec.pythonpath}]}
            body |= {"jobManager": env, "taskManager": env}
        manifest = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": NAME},
            "spec": body,
        }
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

    def last_attempt(self) -> int:
        """The newest attempt (the JobMaster's numbering, ``get_attempt_number``) that left a stamp."""
        numbers = [int(p.name[1:].split("-", 1)[0]) for p in self.stamps.glob("a*-s*.json")]
        return max(numbers, default=-1)

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

    def jobmaster_ip(self, attempt: int) -> str:
        """The pod IP of the attempt's JobMaster."""
        pod = self.bed.api.get(f"/api/v1/namespaces/{self.namespace}/pods/{NAME}-jobmaster-{attempt}")
        return str(pod["status"]["podIP"])

    def overview(self, attempt: int) -> Json:
        """``GET /job`` of the attempt's JobMaster (reading needs no token)."""
        with urllib.request.urlopen(f"http://{self.jobmaster_ip(attempt)}:8081/job", timeout=5) as response:
            body: Json = json.loads(response.read())
        return body

    def slot_holder(self, attempt: int) -> str:
        """A worker pod of ``attempt`` that holds a slot of the running attempt (not a standby's spare slots)."""
        hosts = {w["address"][0] for w in self.overview(attempt)["workers"]}
        selector = f"streamjob.dev/attempt={attempt},app.kubernetes.io/component=worker"
        pods = self.bed.api.get(f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=selector)["items"]
        holders = sorted(p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("podIP") in hosts)
        if not holders:
            raise RuntimeError(f"no worker pod of attempt {attempt} holds a slot")
        return str(holders[0])

    def delete(self) -> None:
        try:
            self.bed.api.delete(self.path)
            self.bed.wait(lambda: not self._exists(), 60, "the StreamJob's deletion")
            self.bed.wait(
                lambda: not self.bed.api.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"],
                60,
                "the job's pods to go",
            )
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


def running(s: Json, attempt: int | None = None) -> bool:
    """Status says Running with no operation in flight (of ``attempt``, if given)."""
    ok = s.get("lifecycleState") == "Running" and not s.get("operation")
    return ok and (attempt is None or s.get("attempt") == attempt)


def checkpointed(s: Json, at_least: int) -> bool:
    """Running, with checkpoint ``at_least`` of the current jobId completed."""
    last = s.get("lastCheckpoint") or {}
    return running(s) and last.get("jobId") == s.get("jobId") and int(last.get("id") or 0) >= at_least


# -- timelines -----------------------------------------------------------------------------------------


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_time(path: Path, needle: str, since: float = 0.0) -> float | None:
    """Wall-clock time of the first log line containing ``needle`` at or after ``since`` (asctime, local time)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = _LOG_TIME.match(line)
        if match and needle in line:
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= since - 0.001:  # asctime has ms precision
                return at
    return None


def pod_times(events: list[Json], name: str) -> dict[str, float]:
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


def sj_first(events: list[Json], check: Callable[[Json], bool]) -> float | None:
    """Arrival time of the first StreamJob event whose status passes ``check``."""
    return next((e["t"] for e in events if e["type"] != "DELETED" and check(e["object"].get("status") or {})), None)


def pods_timeline(bed: Testbed, job: BenchJob, since: float, old: int, new: int) -> dict[str, float | None]:
    """Milestones of the attempt change ``old`` → ``new`` from pod events and the JobMaster's log."""
    assert bed.recorder is not None
    pods = bed.recorder.select(job.namespace, since, "pod")
    pods_per_attempt = job.spec.parallelism + job.spec.standby
    workers = [f"{NAME}-worker-{new}-{i}" for i in range(pods_per_attempt)]
    old_pods = [f"{NAME}-jobmaster-{old}"] + [f"{NAME}-worker-{old}-{i}" for i in range(pods_per_attempt)]
    old_times = [pod_times(pods, p).get("deleted") for p in old_pods]
    jm = pod_times(pods, f"{NAME}-jobmaster-{new}")
    worker_times = [pod_times(pods, w) for w in workers]
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


def replacement_timeline(
    bed: Testbed, job: BenchJob, since: float, attempt: int, victim: str
) -> dict[str, float | None]:
    """Milestones of a worker crash recovered in place: the JobMaster's log and the replacement pod's events."""
    assert bed.recorder is not None
    pods = bed.recorder.select(job.namespace, since, "pod")
    prefix = f"{NAME}-worker-{attempt}-"
    added = [e["object"]["metadata"]["name"] for e in pods if e["type"] == "ADDED"]
    replacement = next((n for n in added if n.startswith(prefix) and n != victim), None)
    times = pod_times(pods, replacement) if replacement is not None else {}
    jm_log = bed.agent.log_path(job.namespace, f"{NAME}-jobmaster-{attempt}")
    return {
        "jm_restarting": _log_time(jm_log, "event restarting", since),
        "replacement_created": times.get("created"),
        "replacement_started": times.get("running"),
        "tasks_deployed": _log_time(jm_log, "event running", since),
        "spare_registered": _log_time(jm_log, "a spare slot registered", since),
    }


def spare_registered(bed: Testbed, job: BenchJob, attempt: int, since: float, timeout: float) -> float:
    """Waits for the JobMaster's log to say a spare slot registered after ``since``; returns when it did."""
    jm_log = bed.agent.log_path(job.namespace, f"{NAME}-jobmaster-{attempt}")
    at: float = bed.wait(lambda: _log_time(jm_log, "a spare slot registered", since), timeout, "a new spare slot")
    return at


def jobmaster_pods_created(bed: Testbed, job: BenchJob, since: float) -> list[str]:
    """JobMaster pods created after ``since`` (none when the JobMaster recovered in place)."""
    assert bed.recorder is not None
    pods = bed.recorder.select(job.namespace, since, "pod")
    return [
        e["object"]["metadata"]["name"]
        for e in pods
        if e["type"] == "ADDED" and e["object"]["metadata"]["name"].startswith(f"{NAME}-jobmaster-")
    ]


def relative(t0: float, points: dict[str, float | None]) -> dict[str, float | None]:
    """Milestones as seconds after ``t0`` (ms precision)."""
    return {k: (round(v - t0, 3) if v is not None else None) for k, v in points.items()}
