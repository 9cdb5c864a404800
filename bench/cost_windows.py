"""The cost of checkpointing every second, measured inside one job: windows with and without checkpoints.

Two separate runs of the same job differ by ±10-20 % on the 2-core VMs this suite runs on (the
host's other tenants), whether or not they checkpoint, so comparing an "off" run with an "every
1 s" run cannot resolve a cost of a few per cent however many rounds are taken. Here one long job
alternates windows of ``window_s`` seconds: in an ON window the harness triggers an exactly-once
checkpoint every ``interval_s`` (``POST /checkpoints``: the coordinator's own trigger, as its
periodic timer calls it), in an OFF window none. The job's sinks record (time, records received,
process CPU time) every 50 ms, so each window's throughput and CPU time per event are known.

Each ON window is compared with the mean of the OFF windows on either side of it, which cancels
a drift of the machine's speed that is linear over the three windows:

- wall-clock cost = 1 − events/s(ON) / events/s(OFF neighbours),
- CPU cost = 1 − CPU per event(OFF neighbours) / CPU per event(ON), CPU being the slot processes'
  (all threads: task, snapshot I/O, network) as their sinks read it.

Reported per parallelism: every ON window's cost, their median and a 95 % confidence interval of
their mean (Student's t), the checkpoints' durations, and the JobMaster's CPU time per checkpoint
(the JobMaster shares the machine's cores with the slots). The job is then stopped with a savepoint
so that every sink writes its report; its first checkpoint is taken in the warm-up, before the
first window, since a job that checkpoints every second pays for its first one only once.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import JOBS, REPO, RunError, _get, _Observed, _read_progress, _sink_reports, percentile
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, derive_rest_token, new_job_secret

DESCRIPTION = (
    "cost of checkpointing every 1 s inside one job, at p=1 and p=2: the slots' checkpoint CPU over "
    "their CPU, and 31 alternating 4 s windows with and without checkpoints compared"
)

_T95 = {
    1: 12.71,
    2: 4.30,
    3: 3.18,
    4: 2.78,
    5: 2.57,
    6: 2.45,
    7: 2.36,
    8: 2.31,
    9: 2.26,
    10: 2.23,
    11: 2.20,
    12: 2.18,
    13: 2.16,
    14: 2.14,
    15: 2.13,
    16: 2.12,
    17: 2.11,
    18: 2.10,
    19: 2.09,
    20: 2.09,
}


@dataclass(frozen=True)
class WindowPlan:
    """One alternating run: its job and its schedule."""

    parallelism: int
    window_s: float = 4.0
    on_windows: int = 15
    interval_s: float = 1.0
    warmup_s: float = 3.0
    keys: int = 10_000
    timeout_s: float = 300.0

    @property
    def windows(self) -> int:
        """OFF, ON, OFF, …, ON, OFF: every ON window has an OFF window on either side."""
        return 2 * self.on_windows + 1


FULL = {p: WindowPlan(p) for p in (1, 2)}
QUICK = {p: WindowPlan(p, window_s=1.0, on_windows=2, interval_s=0.5, warmup_s=1.0, timeout_s=120.0) for p in (1, 2)}


def _jobmaster_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (the ``streamjob run`` process: the JobMaster)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _post(url: str, token: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read() or b"{}")
        return result


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def at(timeline: list[list[float]], t: float) -> tuple[float, float] | None:
    """(records, CPU s) of one sink at wall time ``t``, interpolated between its samples; None outside them."""
    if not timeline or t < timeline[0][0] or t > timeline[-1][0]:
        return None
    lo, hi = 0, len(timeline) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if timeline[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, n0, c0), (t1, n1, c1) = timeline[lo], timeline[hi]
    f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
    return n0 + f * (n1 - n0), c0 + f * (c1 - c0)


def window_figures(timelines: list[list[list[float]]], start: float, end: float) -> dict[str, float] | None:
    """Events/s and CPU ns per event of all sinks together in [start, end); None if a sink has no samples there."""
    events = cpu = 0.0
    for timeline in timelines:
        a, b = at(timeline, start), at(timeline, end)
        if a is None or b is None:
            return None
        events += b[0] - a[0]
        cpu += b[1] - a[1]
    if events <= 0:
        return None
    return {"events_per_s": events / (end - start), "cpu_ns_per_event": cpu * 1e9 / events}


def interval95(values: list[float]) -> tuple[float, float] | None:
    """The 95 % confidence interval of the mean of ``values`` (Student's t); None for fewer than 2."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = _T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return round(mean - half, 2), round(mean + half, 2)


def costs(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ON window against the mean of its OFF neighbours: wall-clock and CPU cost in per cent."""
    wall: list[float] = []
    cpu: list[float] = []
    for i, window in enumerate(windows):
        if window["kind"] != "on" or i == 0 or i + 1 >= len(windows):
            continue
        before, after, on = windows[i - 1].get("figures"), windows[i + 1].get("figures"), window.get("figures")
        if not before or not after or not on:
            continue
        off_rate = (before["events_per_s"] + after["events_per_s"]) / 2
        off_cpu = (before["cpu_ns_per_event"] + after["cpu_ns_per_event"]) / 2
        wall.append(100 * (1 - on["events_per_s"] / off_rate))
        cpu.append(100 * (1 - off_cpu / on["cpu_ns_per_event"]))

    def summary(values: list[float]) -> dict[str, Any]:
        return {
            "median": round(statistics.median(values), 2) if values else None,
            "mean": round(statistics.fmean(values), 2) if values else None,
            "ci95": interval95(values),
            "windows": [round(v, 2) for v in values],
        }

    return {"wall": summary(wall), "cpu": summary(cpu)}


def direct_cost(windows: list[dict[str, Any]], cpu_ms: dict[int, float | None]) -> float | None:
    """Checkpoint CPU of the slots over their whole CPU time in the ON windows, in per cent.

    Both are CPU times of the same processes over the same seconds, so a slow machine stretches
    them alike. None when a checkpoint's CPU was not seen or a window has no figures.
    """
    on = [w for w in windows if w["kind"] == "on"]
    if not on or any(v is None for v in cpu_ms.values()) or any(not w.get("figures") for w in on):
        return None
    slots_cpu_ms = (
        sum(w["figures"]["cpu_ns_per_event"] * w["figures"]["events_per_s"] * (w["end"] - w["start"]) for w in on) / 1e6
    )
    return round(100 * sum(v or 0.0 for v in cpu_ms.values()) / slots_cpu_ms, 2) if slots_cpu_ms else None


def run(plan: WindowPlan, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Runs the alternating schedule once at ``plan.parallelism``; raises ``RunError`` if the job fails."""
    with tempfile.TemporaryDirectory(prefix="streamjob-bench-cost-") as tmp:
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "streamjob.worker.cli",
            "run",
            "--parallelism",
            str(plan.parallelism),
            "--rest-port",
            "0",
            "--checkpoint-dir",
            str(Path(tmp) / "checkpoints"),
            "--mode",
            "EXACTLY_ONCE",
            "--name",
            "bench-cost",
            str(JOBS / "keyed_sum.py"),
            "--",
            "--records",
            str(10**13),
            "--keys",
            str(plan.keys),
            "--out",
            str(out_dir),
            "--timeline",
        ]
        seen = _Observed()
        secret = new_job_secret()  # the run's secret: its REST token is derived from it
        token = derive_rest_token(secret)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{JOB_SECRET_ENV: secret})
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env
        )
        reader = threading.Thread(target=_read_progress, args=(proc.stderr, seen), daemon=True)
        reader.start()
        try:
            windows, triggered, jm_cpu = _schedule(plan, proc, seen, token)
            stopped = _post(f"{seen.rest}/savepoints", token, {"stop": True})
            proc.wait(timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired) as err:
            raise RunError(
                f"cost windows at p={plan.parallelism}: {err}; last lines: "
                + " | ".join(line for _, line in seen.lines[-5:])
            ) from err
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=5)
        if proc.returncode != 0:
            raise RunError(
                f"cost windows at p={plan.parallelism} exited with {proc.returncode}: "
                + " | ".join(line for _, line in seen.lines[-8:])
            )
        reports = _sink_reports(out_dir)
        timelines = [r["timeline"] for r in reports if r.get("timeline")]
        if len(timelines) != plan.parallelism:
            raise RunError(
                f"cost windows at p={plan.parallelism}: {len(timelines)} sink timelines, expected {plan.parallelism}"
            )
    for window in windows:
        window["figures"] = window_figures(timelines, window["start"], window["end"])
    completed = {cid: cp for cid, cp in seen.checkpoints.items() if cid in triggered}
    durations = [float(cp["duration_ms"]) for cp in completed.values()]
    result = {
        "plan": asdict(plan),
        "windows": windows,
        "costs": costs(windows),
        "direct_cost_pct": direct_cost(windows, triggered),
        "checkpoint_cpu_ms_p50": percentile([v for v in triggered.values() if v is not None], 0.5),
        "checkpoints_triggered": len(triggered),
        "checkpoints_completed": len(completed),
        "checkpoint_ms_p50": percentile(durations, 0.5),
        "checkpoint_ms_p99": percentile(durations, 0.99),
        "jobmaster_cpu_ms_per_checkpoint": round(1000 * jm_cpu / max(1, len(triggered)), 2),
        "stopped_with_savepoint": stopped.get("request_id") or stopped.get("id"),
    }
    c = result["costs"]
    log(
        f"  cost p={plan.parallelism}: direct {result['direct_cost_pct']} % of the slots' CPU; windows: "
        f"events/s median {c['wall']['median']} % (95 % CI {c['wall']['ci95']}), CPU/event median "
        f"{c['cpu']['median']} % (CI {c['cpu']['ci95']}); {len(completed)}/{len(triggered)} checkpoints, "
        f"p50 {result['checkpoint_ms_p50']} ms"
    )
    return result


def _schedule(
    plan: WindowPlan, proc: subprocess.Popen[bytes], seen: _Observed, token: str
) -> tuple[list[dict[str, Any]], dict[int, float | None], float]:
    """Warm-up, then the alternating windows; returns them, the checkpoints triggered in ON windows with
    their CPU ms in the slots (None if not seen completed) and the JobMaster's extra CPU seconds in ON
    windows over OFF windows."""
    deadline = time.time() + plan.timeout_s
    while seen.running_at is None or seen.rest is None:
        if proc.poll() is not None or time.time() > deadline:
            raise RunError(
                f"cost windows at p={plan.parallelism}: the job did not start: "
                + " | ".join(line for _, line in seen.lines[-8:])
            )
        time.sleep(0.05)
    time.sleep(plan.warmup_s / 2)
    _post(f"{seen.rest}/checkpoints", token)  # the first checkpoint (thread pool, directories) is not steady-state
    time.sleep(plan.warmup_s / 2)
    windows: list[dict[str, Any]] = []
    triggered: set[int] = set()
    cpu_ms: dict[int, float] = {}
    jm_on = jm_off = 0.0
    t0 = time.time()
    for k in range(plan.windows):
        start, end = t0 + k * plan.window_s, t0 + (k + 1) * plan.window_s
        kind = "on" if k % 2 else "off"
        _sleep_until(start)
        jm_before = _jobmaster_cpu_s(proc.pid)
        if kind == "on":
            for j in range(round(plan.window_s / plan.interval_s)):
                _sleep_until(start + j * plan.interval_s)
                triggered.add(int(_post(f"{seen.rest}/checkpoints", token)["id"]))
            _sleep_until(end - min(0.3, plan.interval_s / 2))  # the window's last checkpoint has completed
            _record_cpu(seen.rest, cpu_ms)
        _sleep_until(end)
        jm = _jobmaster_cpu_s(proc.pid) - jm_before
        jm_on, jm_off = (jm_on + jm, jm_off) if kind == "on" else (jm_on, jm_off + jm)
        windows.append({"kind": kind, "start": start, "end": end, "jobmaster_cpu_s": round(jm, 3)})
    time.sleep(0.5)  # the sinks sample every 50 ms: let them pass the last window's end before the stop
    off_windows = plan.on_windows + 1
    extra = jm_on - jm_off * plan.on_windows / off_windows
    _record_cpu(seen.rest, cpu_ms)
    return windows, {cid: cpu_ms.get(cid) for cid in triggered}, max(0.0, extra)


def _record_cpu(rest: str | None, into: dict[int, float]) -> None:
    """Each completed checkpoint's CPU time in the slots (``GET /checkpoints``: the last 50)."""
    body = _get(f"{rest}/checkpoints", timeout=5.0)
    for rec in json.loads(body).get("history", []) if body else []:
        if rec.get("status") == "COMPLETED" and rec.get("kind") == "checkpoint":
            into[int(rec["id"])] = float(rec.get("cpu_ms") or 0.0)


def run_all(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Both parallelisms; the results entry of the ``cost`` scenario."""
    plans = QUICK if quick else FULL
    out: dict[str, Any] = {"description": DESCRIPTION, "by_parallelism": {}, "errors": []}
    for p, plan in plans.items():
        try:
            out["by_parallelism"][f"p{p}"] = run(plan, log)
        except RunError as err:
            log(f"  cost p={p}: FAILED: {err}")
            out["errors"].append(str(err))
    return out
