"""``python -m bench.ab --base REV``: the suite's job scenarios, old code against new, in one run.

Side A is ``worker/`` and ``operator/`` of the base revision (``git archive`` into a temporary
folder), side B the working tree as it is (uncommitted changes included). Each side gets a package
root ``<tmp>/<side>/streamjob/{worker,operator}`` of symlinks to its folders and runs with
``PYTHONPATH`` set to it, this venv's interpreter (``python -m streamjob.worker.cli run``) and a
working directory outside the repository (its top-level ``operator/`` would shadow the stdlib's).
The JobMaster starts its slots with ``sys.executable -m streamjob.worker.cli slot`` and they inherit
the environment, so they run the side's code too: every run's sinks report the ``streamjob.worker``
folder they imported and a run on the wrong code is an error. The job files (``bench/jobs``) are the
working tree's for both sides.

The runs alternate A, B, B, A, … (the order flips every round and every scenario) so that a drift
of the machine's speed hits both sides alike. ``bench/results/ab-<base>-<head>.{json,md}`` hold per
scenario and side the median, min and max of throughput (first to last record), the whole process's
wall clock, CPU per event, the pooled checkpoint p50, and B against A: the difference of the medians
and the median of each round's paired difference. The verdict columns apply the issues' rule: no
more than 3 % slower, checkpoint p50 no more than 5 ms longer.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import REPO, Launch
from bench.suite import SCENARIOS, run_once, summarise

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = ("p1", "p2", "userfn_p1", "userfn_p2", "userfn_p1_cp1s", "checkpoints")
SLOWER_PCT_MAX = 3.0
CHECKPOINT_P50_MS_MAX = 5.0
# metric: (how to read it from a run, True if higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "events_per_s": ("events/s (first → last record)", True),
    "process_s": ("whole process s (start-up included)", False),
    "cpu_ns_per_event": ("CPU ns/event", False),
}


class AbError(RuntimeError):
    """A set-up step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its label, the code it runs and how to launch it."""

    label: str
    rev: str
    worker_dir: Path
    launch: Launch


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AbError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout.strip()


def _package_root(root: Path, worker: Path, operator: Path) -> Path:
    """``root/streamjob/{worker,operator}`` → the given folders (``streamjob`` is a namespace package)."""
    (root / "streamjob").mkdir(parents=True)
    (root / "streamjob" / "worker").symlink_to(worker, target_is_directory=True)
    (root / "streamjob" / "operator").symlink_to(operator, target_is_directory=True)
    return root


def _check_side(side: Side) -> None:
    """The side's interpreter imports ``streamjob.worker`` from the side's folder."""
    probe = "import streamjob.worker.cli, streamjob.worker as w; print(w.__file__)"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **dict(side.launch.env)}
    done = subprocess.run(
        [side.launch.command[0], "-c", probe], cwd=side.launch.cwd, capture_output=True, text=True, check=False, env=env
    )
    found = Path(done.stdout.strip()).resolve().parent if done.returncode == 0 else None
    if found != side.worker_dir.resolve():
        raise AbError(
            f"side {side.label} ({side.rev}) imports streamjob.worker from {found or done.stderr.strip()}, "
            f"expected {side.worker_dir}"
        )


def prepare(base_rev: str, tmp: Path) -> tuple[Side, Side]:
    """Side A (``base_rev``'s code, extracted into ``tmp``) and side B (the working tree)."""
    sha = _git("rev-parse", "--verify", f"{base_rev}^{{commit}}")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha, "worker", "operator"], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise AbError(f"git archive {sha[:10]} worker operator: {archive.stderr.decode(errors='replace').strip()}")
    code = tmp / "base"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(code, filter="data")
    run_dir = tmp / "cwd"  # outside the repository: its operator/ would shadow the stdlib's operator
    run_dir.mkdir()
    head = _git("rev-parse", "--short=10", "HEAD") + (
        "-dirty" if _git("status", "--porcelain", "worker", "operator") else ""
    )
    sides = []
    for label, rev, folder in (("A", sha[:10], code), ("B", head, REPO)):
        root = _package_root(tmp / label, folder / "worker", folder / "operator")
        launch = Launch(
            command=(sys.executable, "-m", "streamjob.worker.cli"), env=(("PYTHONPATH", str(root)),), cwd=run_dir
        )
        sides.append(Side(label, rev, folder / "worker", launch))
    for side in sides:
        _check_side(side)
    return sides[0], sides[1]


def _pct(new: float | None, old: float | None) -> float | None:
    return round(100 * (new / old - 1), 2) if new is not None and old else None


def compare(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """B against A for one scenario: medians, ranges, paired differences, checkpoint p50, verdicts."""
    out: dict[str, Any] = {"sides": {label: summarise(name, rs) if rs else None for label, rs in runs.items()}}
    for metric, (_, higher_better) in METRICS.items():
        by_round = {label: {r["ab_round"]: float(r[metric]) for r in rs if r.get(metric)} for label, rs in runs.items()}
        values = {label: list(v.values()) for label, v in by_round.items()}
        medians = {label: statistics.median(v) if v else None for label, v in values.items()}
        paired = [_pct(by_round["B"][i], a) for i, a in by_round["A"].items() if i in by_round["B"]]
        diff = _pct(medians["B"], medians["A"])
        worse = None if diff is None else (-diff if higher_better else diff)
        out[metric] = {
            **{
                label: {"median": medians[label], "min": min(v) if v else None, "max": max(v) if v else None, "runs": v}
                for label, v in values.items()
            },
            "diff_pct": diff,
            "paired_diff_pct_median": round(statistics.median(p for p in paired if p is not None), 2)
            if any(p is not None for p in paired)
            else None,
            "within": None if worse is None else worse <= SLOWER_PCT_MAX,
        }
    p50 = {label: (s or {}).get("checkpoint_ms_p50") for label, s in out["sides"].items()}
    delta = p50["B"] - p50["A"] if p50["A"] is not None and p50["B"] is not None else None
    out["checkpoint_p50_ms"] = {
        "A": p50["A"],
        "B": p50["B"],
        "diff_ms": delta,
        "within": None if delta is None else delta <= CHECKPOINT_P50_MS_MAX,
    }
    return out


def _f(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:+,.{digits}f}{unit}" if unit == " %" else f"{value:,.{digits}f}{unit}"


def markdown(results: dict[str, Any]) -> str:
    """The report: one row per scenario and metric."""
    a, b = results["sides"]["A"], results["sides"]["B"]
    env = results["environment"]
    lines = [
        f"# A/B: {a['rev']} (A, `{results['base']}`) against {b['rev']} (B, working tree)",
        "",
        f"Command: `{results['command']}` — {results['created']} — "
        f"{'QUICK smoke run (not representative)' if results['quick'] else 'full run'}; "
        f"{results['rounds_done']} of {results['rounds']} rounds, A and B alternating (ABBA).",
        "",
        f"Machine: {env['cpus']} CPUs, Python {env['python']}; load average before the runs: {results['load_range']}.",
        "",
        f"B vs A: the difference of the medians, and the median over rounds of each round's pair (adjacent in "
        f"time). Within: B no more than {SLOWER_PCT_MAX:g} % worse than A (medians), checkpoint p50 no more "
        f"than {CHECKPOINT_P50_MS_MAX:g} ms longer.",
        "",
        "| scenario | metric | A median (min–max) | B median (min–max) | B vs A | paired | within |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, c in results["scenarios"].items():
        for metric, (what, _) in METRICS.items():
            m = c[metric]
            digits = 2 if metric == "process_s" else 0
            cells = [
                f"{_f(m[s]['median'], digits)} ({_f(m[s]['min'], digits)}–{_f(m[s]['max'], digits)})"
                for s in ("A", "B")
            ]
            lines.append(
                f"| {name} | {what} | {cells[0]} | {cells[1]} | {_f(m['diff_pct'], 1, ' %')} "
                f"| {_f(m['paired_diff_pct_median'], 1, ' %')} | {_f(m['within'])} |"
            )
        cp = c["checkpoint_p50_ms"]
        if cp["A"] is not None or cp["B"] is not None:
            delta = "–" if cp["diff_ms"] is None else f"{cp['diff_ms']:+.0f} ms"
            lines.append(
                f"| {name} | checkpoint p50 ms | {_f(cp['A'])} | {_f(cp['B'])} | {delta} | | {_f(cp['within'])} |"
            )
    errors = [(n, s, e) for n, c in results["scenarios"].items() for s, es in c["errors"].items() for e in es]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {n} {s}: {e.splitlines()[0]}" for n, s, e in errors]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision of side A (side B is the working tree)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"job scenarios (default {','.join(DEFAULT)}; `keyed_` prefixes are accepted, e.g. keyed_p1)",
    )
    p.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke-sized runs that verify every output")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    p.add_argument("--autogroup-nice", type=int, default=None, metavar="N", help="as for python -m bench")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder with the base's code")
    return p


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip().removeprefix("keyed_") for item in args.only for n in item.split(",") if n.strip()]
    names = names or list(DEFAULT)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        _log(f"error: --only: {', '.join(unknown)} is not a job scenario; choose from {', '.join(SCENARIOS)}")
        return 2
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    if rounds < 1:
        _log("error: --rounds must be >= 1")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="streamjob-ab-"))
    try:
        side_a, side_b = prepare(args.base, tmp)
    except AbError as err:
        _log(f"error: {err}")
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    _log(f"A = {side_a.rev} ({args.base}) from {side_a.worker_dir}; B = {side_b.rev} from {side_b.worker_dir}")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"A": [], "B": []} for n in names}
    errors: dict[str, dict[str, list[str]]] = {n: {"A": [], "B": []} for n in names}
    loads: list[float] = []
    stem = f"ab-{side_a.rev}-{side_b.rev}"
    results: dict[str, Any] = {
        "schema": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.ab", *(argv if argv is not None else sys.argv[1:])]),
        "base": args.base,
        "quick": args.quick,
        "rounds": rounds,
        "rounds_done": 0,
        "environment": report.environment(),
        "limits": {"slower_pct_max": SLOWER_PCT_MAX, "checkpoint_p50_ms_max": CHECKPOINT_P50_MS_MAX},
        "sides": {s.label: {"rev": s.rev, "worker_dir": str(s.worker_dir)} for s in (side_a, side_b)},
    }
    step = 0
    try:
        for index in range(rounds):
            for name in names if index % 2 == 0 else list(reversed(names)):
                pair = (side_a, side_b) if step % 2 == 0 else (side_b, side_a)
                step += 1
                for side in pair:
                    outcome = run_once(
                        SCENARIOS[name],
                        args.quick,
                        f"{side.label} round {index + 1}/{rounds}",
                        _log,
                        args.autogroup_nice,
                        side.launch,
                    )
                    if isinstance(outcome, dict):
                        ran = {str(Path(p).resolve()) for p in outcome.get("worker_packages", [])}
                        if ran != {str(side.worker_dir.resolve())}:
                            outcome = f"ran streamjob.worker from {sorted(ran)}, expected {side.worker_dir}"
                            _log(f"  {name} {side.label}: FAILED: {outcome}")
                    if isinstance(outcome, dict):
                        outcome["ab_round"] = index
                        runs[name][side.label].append(outcome)
                        loads.append(outcome["load_average_before"])
                    else:
                        errors[name][side.label].append(outcome)
            results["rounds_done"] = index + 1
            results["load_range"] = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"
            results["scenarios"] = {n: {**compare(runs[n], n), "errors": errors[n], "runs": runs[n]} for n in names}
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
            (args.out / f"{stem}.md").write_text(markdown(results))
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    _log(f"results: {args.out / stem}.md and .json")
    return 1 if any(e for per in errors.values() for e in per.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
