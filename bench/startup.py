"""``python -m bench.startup --base REV``: start-up of ``streamjob run``, old code against new, in one run.

The job (``bench/jobs/startup_job.py``) is tiny: ten records through a map into a sink whose every
subtask writes the wall-clock time of its first record. Per run it measures, from the moment before
``python -m streamjob.worker.cli run`` is started:

- ``first_record_s``: to the first record at any sink (the start-up a user waits for),
- ``exit_s``: to the end of the process (start-up, the records, the final checkpoint, shut-down),
- ``cpu_s``: the CPU time (user + system) of the whole run, its slots included (the JobMaster reaps
  them), a figure far less disturbed by other load on a shared machine than the wall clock.

Sides A (``--base``'s ``worker/`` and ``operator/``) and B (the working tree) are prepared as by
``bench/ab.py`` (``ab.prepare``: its package roots, interpreter and working directory, every run on the
side's own code, checked through the folder the sink reports). Runs alternate A, B, B, A, … per
parallelism so that a drift of the machine's load hits both sides alike. Both sides' modules and the
job are compiled to bytecode first (``compile_sides``), as an installed package is: with
``PYTHONDONTWRITEBYTECODE=1`` (this machine's default) a working tree would otherwise compile ~100
modules (~0.25 s) on every run and measure the compiler. The medians, minima and
maxima over ``--runs`` runs per side and parallelism, and the load average around them, go to
``bench/results/startup-<base>-<head>.{json,md}``. Without ``--base`` only the working tree runs.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.ab import AbError, Side, prepare
from bench.harness import JOBS, REPO, Launch
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, new_job_secret

RESULTS = Path(__file__).resolve().parent / "results"
JOB = JOBS / "startup_job.py"
TARGET_FIRST_RECORD_S = 0.3
METRICS = {
    "first_record_s": "start → first record (s)",
    "exit_s": "start → process exit (s)",
    "cpu_s": "CPU of the run, slots included (s)",
}


def run_once(launch: Launch, parallelism: int, tmp: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """One ``streamjob run`` of the start-up job; raises ``RuntimeError`` naming what went wrong."""
    out = Path(tempfile.mkdtemp(prefix="out-", dir=tmp))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(dict(launch.env))
    env[JOB_SECRET_ENV] = new_job_secret()
    cmd = [
        *launch.command,
        "run",
        "--quiet",
        "-p",
        str(parallelism),
        "--checkpoint-dir",
        str(tmp / "checkpoints"),
        str(JOB),
        "--",
        "--out",
        str(out),
    ]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    done = subprocess.run(cmd, cwd=launch.cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"exit code {done.returncode}: {done.stderr.strip()[-500:]}")
    reports = [json.loads(p.read_text()) for p in out.glob("first-*.json")]
    if not reports:
        raise RuntimeError("no sink reported a first record")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "first_record_s": round(min(r["first_record"] for r in reports) - started, 4),
        "exit_s": round(ended - started, 4),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 4),
        "workers": sorted({r["worker"] for r in reports}),
        "load_average_before": load,
    }


def compile_sides(sides: list[Side]) -> None:
    """Writes the bytecode of each side's ``worker/`` and of the job, so that no run compiles them."""
    for folder in [*(s.worker_dir for s in sides), JOB.parent]:
        if not compileall.compile_dir(str(folder), quiet=1):
            raise AbError(f"cannot compile {folder} to bytecode")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of each metric over the runs of one side and parallelism."""
    out: dict[str, Any] = {"runs": len(runs)}
    for metric in METRICS:
        values = [r[metric] for r in runs]
        out[metric] = {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None
    return out


def markdown(results: dict[str, Any]) -> str:
    """The report: one row per parallelism and metric, A against B."""
    sides = results["sides"]
    labels = list(sides)
    head = " against ".join(f"{s['rev']} ({label})" for label, s in sides.items())
    lines = [
        f"# Start-up of `streamjob run`: {head}",
        "",
        f"Command: `{results['command']}` — {results['created']}; {results['runs']} runs per side and "
        f"parallelism, sides alternating (ABBA). Machine: {results['environment']['cpus']} CPUs, Python "
        f"{results['environment']['python']}; load average before the runs {results['load_range']}.",
        "",
        "Job: `bench/jobs/startup_job.py` (10 records → map → a sink noting its first record), file:// "
        "checkpoint storage, checkpointing off, both sides' modules compiled to bytecode beforehand."
        f" Target: start → first record ≤ {TARGET_FIRST_RECORD_S} s at p=1.",
        "",
        "| p | metric | " + " | ".join(f"{label} median (min–max)" for label in labels) + " |",
        "|---|---|" + "---:|" * len(labels),
    ]
    for p, per in results["parallelism"].items():
        for metric, what in METRICS.items():
            cells = []
            for label in labels:
                s = per[label].get(metric)
                cells.append("–" if s is None else f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})")
            lines.append(f"| {p} | {what} | " + " | ".join(cells) + " |")
    errors = [(p, label, e) for p, per in results["errors"].items() for label, es in per.items() for e in es]
    if errors:
        lines += ["", "## Errors", ""] + [f"- p={p} {label}: {e.splitlines()[0]}" for p, label, e in errors]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    p.add_argument("--base", default=None, help="git revision of side A (side B is the working tree)")
    p.add_argument("--runs", type=int, default=9, help="runs per side and parallelism (default 9)")
    p.add_argument("--parallelism", default="1,2", help="comma-separated parallelisms (default 1,2)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    return p


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        levels = [int(p) for p in args.parallelism.split(",") if p.strip()]
    except ValueError:
        _log(f"error: --parallelism: '{args.parallelism}' is not a comma-separated list of numbers, e.g. 1,2")
        return 2
    if args.runs < 1 or not levels or min(levels) < 1:
        _log("error: --runs and every --parallelism must be >= 1")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="streamjob-startup-"))
    try:
        if args.base:
            side_a, side_b = prepare(args.base, tmp)
            sides = [side_a, side_b]
        else:
            sides = [Side("B", "working-tree", REPO / "worker", Launch(cwd=tmp))]
        compile_sides(sides)
    except AbError as err:
        _log(f"error: {err}")
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {p: {s.label: [] for s in sides} for p in levels}
    errors: dict[int, dict[str, list[str]]] = {p: {s.label: [] for s in sides} for p in levels}
    step = 0
    try:
        for index in range(args.runs):
            for p in levels:
                order = sides if step % 2 == 0 else list(reversed(sides))
                step += 1
                for side in order:
                    try:
                        outcome = run_once(side.launch, p, tmp)
                        if {str(Path(w).resolve()) for w in outcome["workers"]} != {str(side.worker_dir.resolve())}:
                            raise RuntimeError(f"ran streamjob.worker from {outcome['workers']}")
                    except (RuntimeError, subprocess.TimeoutExpired) as err:
                        errors[p][side.label].append(str(err))
                        _log(f"p={p} {side.label} run {index + 1}: FAILED: {err}")
                        continue
                    runs[p][side.label].append(outcome)
                    first, ended = outcome["first_record_s"], outcome["exit_s"]
                    _log(
                        f"p={p} {side.label} run {index + 1}/{args.runs}: first record {first:.3f} s, "
                        f"exit {ended:.3f} s (load {outcome['load_average_before']:.1f})"
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loads = [r["load_average_before"] for per in runs.values() for rs in per.values() for r in rs]
    stem = "startup-" + "-".join(s.rev for s in sides)
    results = {
        "schema": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.startup", *(argv if argv is not None else sys.argv[1:])]),
        "runs": args.runs,
        "environment": report.environment(),
        "load_range": f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–",
        "sides": {s.label: {"rev": s.rev, "worker_dir": str(s.worker_dir)} for s in sides},
        "parallelism": {p: {label: summarise(rs) for label, rs in per.items()} for p, per in runs.items()},
        "errors": errors,
        "raw": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    _log(f"results: {args.out / stem}.md and .json")
    return 1 if any(e for per in errors.values() for e in per.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
