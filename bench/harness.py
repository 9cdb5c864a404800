"""Runs one benchmark job with ``streamjob run`` and measures it from the outside.

``run_job`` starts ``python -m streamjob.worker.cli run`` (local mode: the JobMaster in that
process, one child process per slot) on a job of ``bench/jobs``, and while it runs:

- reads its progress lines (the REST address, every completed checkpoint with its duration),
- polls ``GET /checkpoints`` (alignment / sync / async split) and ``GET /metrics`` (backpressure),
- samples the resident memory of the slot processes from /proc every ``sample_every_s``.

Afterwards it reads the sinks' reports (first and last record, count, VmHWM) written by the job.
Throughput is records / (last record - first record) at the sinks, so process start-up and the
final checkpoint are excluded; start-up is reported on its own, and ``process_s`` is the wall clock
of the whole ``streamjob run`` process (start-up, records, final checkpoint, shutdown).

A ``Launch`` says which code runs: by default this venv's ``streamjob.worker`` from the repository;
``bench/ab.py`` passes one per side (its interpreter, ``PYTHONPATH``, working directory). Every run
gets a job secret in ``STREAMJOB_JOB_SECRET`` (revisions before REST authentication ignore it).
Used by ``suite`` and ``ab``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs, window_check
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, new_job_secret

REPO = Path(__file__).resolve().parent.parent
JOBS = Path(__file__).resolve().parent / "jobs"

_REST = re.compile(r"REST API (http://[0-9.]+:\d+)")
_CHECKPOINT = re.compile(r"checkpoint (\d+) completed in (\d+) ms")
_BACKPRESSURE = re.compile(r"^streamjob_backpressured_seconds_total\{([^}]*)\} (\S+)", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class JobSpec:
    """One run of a benchmark job: what to run and how."""

    job: str
    parallelism: int
    records: int
    keys: int
    checkpoint_interval_ms: int | None = None
    sink_delay_us: float = 0.0
    verify: bool = False
    rate: float | None = None
    timeout_s: float = 600.0
    sample_every_s: float = 0.1
    extra_args: tuple[str, ...] = ()
    autogroup_nice: int | None = None
    run_options: tuple[str, ...] = ()
    """Extra ``streamjob run`` flags, before the job (e.g. ``-D buffer_debloat.enabled=false``)."""


@dataclass(frozen=True)
class Launch:
    """How to start ``streamjob``: the command before ``run``, extra environment, working directory.

    The default is this venv's interpreter on the code it imports (the repository's working tree).
    Slot processes are started by the JobMaster with its own ``sys.executable -m streamjob.worker.cli``
    and inherit the environment, so a ``PYTHONPATH`` here selects the slots' code as well.
    """

    command: tuple[str, ...] = (sys.executable, "-m", "streamjob.worker.cli")
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path = REPO


@dataclass
class _Observed:
    """What the reader thread and the poller saw while the job ran (shared, appended only)."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    rest: str | None = None
    running_at: float | None = None
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    backpressured_s: dict[str, float] = field(default_factory=dict)
    backpressure_at: float | None = None  # wall time of the first poll that saw a producer wait for credit
    rss: list[dict[str, Any]] = field(default_factory=list)
    jobmaster_hwm_kb: int = 0
    slot_pids: set[int] = field(default_factory=set)


def _read_progress(stream: Any, seen: _Observed) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        now = time.time()
        seen.lines.append((now, line))
        rest = _REST.search(line)
        if rest and seen.rest is None:
            seen.rest = rest.group(1)
        if "attempt 0 running" in line and seen.running_at is None:
            seen.running_at = now
        cp = _CHECKPOINT.search(line)
        if cp:
            entry = seen.checkpoints.setdefault(int(cp.group(1)), {"id": int(cp.group(1))})
            entry["duration_ms"] = int(cp.group(2))
            entry["completed_at"] = now


def _get(url: str, timeout: float = 1.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _poll_rest(seen: _Observed) -> None:
    if seen.rest is None:
        return
    body = _get(seen.rest + "/checkpoints")
    if body:
        try:
            history = json.loads(body).get("history", [])
        except ValueError:
            history = []
        for rec in history:
            if rec.get("status") != "COMPLETED" or rec.get("kind") != "checkpoint":
                continue
            entry = seen.checkpoints.setdefault(int(rec["id"]), {"id": int(rec["id"])})
            entry.setdefault("duration_ms", rec.get("duration_ms"))
            for key in ("alignment_ms", "sync_ms", "async_ms", "size"):
                entry[key] = rec.get(key)
    metrics = _get(seen.rest + "/metrics")
    if metrics:
        for labels, value in _BACKPRESSURE.findall(metrics.decode(errors="replace")):
            named = dict(_LABEL.findall(labels))
            seen.backpressured_s[f"{named.get('vertex')}/{named.get('subtask')}"] = float(value)
        if seen.backpressure_at is None and sum(seen.backpressured_s.values()) > 0:
            seen.backpressure_at = time.time()


def _sample_memory(pid: int, seen: _Observed, started: float) -> None:
    # A spawned slot runs `... slot ...`; a forked one (streamjob run's first slots) keeps its parent's command line.
    parent = procs.cmdline(pid)
    slots = [p for p in procs.children(pid) if "slot" in (line := procs.cmdline(p)) or line == parent]
    seen.slot_pids.update(slots)
    sample: dict[str, Any] = {"t": round(time.time() - started, 3)}
    for slot in slots:
        mem = procs.status_kb(slot, "VmRSS")
        if mem:
            sample[str(slot)] = mem["VmRSS"]
    jm = procs.status_kb(pid, "VmRSS", "VmHWM")
    if jm:
        sample["jobmaster"] = jm["VmRSS"]
        seen.jobmaster_hwm_kb = max(seen.jobmaster_hwm_kb, jm.get("VmHWM", 0))
    if len(sample) > 1:
        seen.rss.append(sample)


def _command(spec: JobSpec, checkpoint_dir: Path, out_dir: Path, launch: Launch) -> list[str]:
    cmd = [
        *launch.command,
        "run",
        "--parallelism",
        str(spec.parallelism),
        "--rest-port",
        "0",
        "--checkpoint-dir",
        str(checkpoint_dir),
        "--name",
        f"bench-{spec.job}",
    ]
    if spec.checkpoint_interval_ms is not None:
        cmd += ["--checkpoint-interval", f"{spec.checkpoint_interval_ms}ms", "--mode", "EXACTLY_ONCE"]
    cmd += [
        *spec.run_options,
        str(JOBS / f"{spec.job}.py"),
        "--",
        "--records",
        str(spec.records),
        "--keys",
        str(spec.keys),
        "--out",
        str(out_dir),
    ]
    if spec.sink_delay_us:
        cmd += ["--sink-delay-us", str(spec.sink_delay_us)]
    if spec.verify:
        cmd.append("--verify")
    if spec.rate:
        cmd += ["--rate", str(spec.rate)]
    return cmd + list(spec.extra_args)


def _sink_reports(out_dir: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(out_dir.glob("sink-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return reports


def expected_value_total(records: int, keys: int) -> int:
    """The sum over all outputs of a running count per key: Σ n_k (n_k + 1) / 2 over the keys."""
    base, extra = divmod(records, keys)
    return extra * (base + 1) * (base + 2) // 2 + (keys - extra) * base * (base + 1) // 2


def _cpu_ns_per_event(reports: list[dict[str, Any]]) -> float | None:
    """CPU time of the slot processes per event while records flowed (None for too short a run)."""
    cpu = sum(float(r.get("cpu_s", 0.0)) for r in reports)
    events = sum(int(r.get("cpu_count", 0)) for r in reports)
    if events < 1000 or cpu <= 0:
        return None
    return round(cpu * 1e9 / events, 1)


def _cpu_share(reports: list[dict[str, Any]]) -> float | None:
    """The fraction of a core each slot process got while records flowed (1.0 = a core of its own)."""
    shares = [
        float(r["cpu_s"]) / (float(r["cpu_at"]) - float(r["first"]))
        for r in reports
        if r.get("cpu_at") and r.get("first") and float(r["cpu_at"]) - float(r["first"]) > 0.05
    ]
    return round(sum(shares) / len(shares), 3) if shares else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return float(ordered[rank - 1])


class RunError(RuntimeError):
    """The job did not finish cleanly; the message names the log to read."""


def run_job(spec: JobSpec, launch: Launch | None = None) -> dict[str, Any]:
    """Runs ``spec`` once and returns its measurements (raises ``RunError`` if the job failed)."""
    launch = launch or Launch()
    with tempfile.TemporaryDirectory(prefix="streamjob-bench-") as tmp:
        checkpoint_dir, out_dir = Path(tmp) / "checkpoints", Path(tmp) / "out"
        out_dir.mkdir()
        cmd = _command(spec, checkpoint_dir, out_dir, launch)
        seen = _Observed()
        # The run's secret (revisions before REST authentication ignore it). The harness only reads
        # (GET needs no token); a caller that changes the job sends derive_rest_token(secret).
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{JOB_SECRET_ENV: new_job_secret()}, **dict(launch.env))
        load_before = procs.load_average()
        launched = time.time()
        proc = subprocess.Popen(
            cmd, cwd=launch.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env
        )
        if spec.autogroup_nice is not None:
            procs.set_autogroup_nice(proc.pid, spec.autogroup_nice)
        reader = threading.Thread(target=_read_progress, args=(proc.stderr, seen), daemon=True)
        reader.start()
        next_rest = 0.0
        try:
            while proc.poll() is None:
                if time.time() - launched > spec.timeout_s:
                    raise RunError(f"{spec.job} at p={spec.parallelism} did not finish in {spec.timeout_s:.0f} s")
                _sample_memory(proc.pid, seen, launched)
                if time.monotonic() >= next_rest:
                    _poll_rest(seen)
                    next_rest = time.monotonic() + 0.5
                time.sleep(spec.sample_every_s)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        ended = time.time()
        reader.join(timeout=5)
        reports = _sink_reports(out_dir)
        if proc.returncode != 0:
            tail = "\n".join(line for _, line in seen.lines[-15:])
            raise RunError(f"{spec.job} at p={spec.parallelism} exited with {proc.returncode}:\n{tail}")
        return _measurements(spec, seen, reports, launched, ended, load_before)


def _measurements(
    spec: JobSpec, seen: _Observed, reports: list[dict[str, Any]], launched: float, ended: float, load_before: float
) -> dict[str, Any]:
    count = sum(int(r["count"]) for r in reports)
    if count != spec.records or not reports:
        raise RunError(
            f"{spec.job} at p={spec.parallelism}: the sinks received {count:,} records, expected "
            f"{spec.records:,} ({len(reports)} sink reports)"
        )
    verified = None
    if spec.verify:
        total = sum(int(r.get("value_total") or 0) for r in reports)
        if spec.job == "event_windows":
            what = "the squared window counts"
            want = window_check.expected_count_squares(spec.records, spec.keys, "--sliding" in spec.extra_args)
        else:
            what, want = "the running sums", expected_value_total(spec.records, spec.keys)
        verified = total == want
        if not verified:
            raise RunError(
                f"{spec.job} at p={spec.parallelism}: WRONG RESULTS: {what} add up to {total:,}, expected {want:,}"
            )
    first = min(float(r["first"]) for r in reports if r["first"] is not None)
    last = max(float(r["last"]) for r in reports)
    wall = max(1e-9, last - first)
    ordered = [seen.checkpoints[i] for i in sorted(seen.checkpoints)]
    final_id = ordered[-1]["id"] if ordered else None
    for cp in ordered:
        cp["final"] = cp["id"] == final_id and cp.get("completed_at", 0.0) >= last
    periodic = [float(cp["duration_ms"]) for cp in ordered if not cp["final"] and cp.get("duration_ms") is not None]
    slot_peaks = {str(r["pid"]): round(int(r["vm_hwm_kb"]) / 1024, 1) for r in reports}
    for sample in seen.rss:
        for key, kb in sample.items():
            if key not in ("t", "jobmaster"):
                slot_peaks[key] = max(slot_peaks.get(key, 0.0), round(kb / 1024, 1))
    return {
        "records": count,
        "verified": verified,
        "wall_s": round(wall, 4),
        "events_per_s": round(count / wall),
        "cpu_ns_per_event": _cpu_ns_per_event(reports),
        "cpu_share_per_slot": _cpu_share(reports),
        "startup_s": round(first - launched, 3),
        "ready_s": round(seen.running_at - launched, 3) if seen.running_at else None,
        "process_s": round(ended - launched, 3),
        "checkpoints": [{k: v for k, v in cp.items() if k != "completed_at"} for cp in ordered],
        "checkpoint_ms_p50": percentile(periodic, 0.5),
        "checkpoint_ms_p99": percentile(periodic, 0.99),
        "periodic_checkpoints": len(periodic),
        "slot_peak_rss_mb": slot_peaks,
        "max_slot_peak_rss_mb": max(slot_peaks.values()) if slot_peaks else None,
        "jobmaster_peak_rss_mb": round(seen.jobmaster_hwm_kb / 1024, 1),
        "backpressured_s": seen.backpressured_s,
        # REST is polled every 0.5 s: this is when a poll first saw it, not the first wait itself
        "backpressure_shown_s": round(seen.backpressure_at - first, 3) if seen.backpressure_at else None,
        "rss_samples": seen.rss,
        "records_window_s": [round(first - launched, 3), round(last - launched, 3)],
        "load_average_before": load_before,
        "worker_packages": sorted({str(r["worker_package"]) for r in reports if r.get("worker_package")}),
        "per_sink": [
            {
                k: r.get(k)
                for k in (
                    "subtask",
                    "pid",
                    "count",
                    "first",
                    "last",
                    "cpu_s",
                    "cpu_count",
                    "voluntary_ctxt_switches",
                    "nonvoluntary_ctxt_switches",
                    "gc",
                    "user_sys_ticks",
                )
            }
            for r in reports
        ],
    }
