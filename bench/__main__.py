"""``python -m bench`` (``make bench``): runs the benchmark suite and writes bench/results/latest.{json,md}.

Options: ``--quick`` (smoke-sized runs, one each: used by the integration test), ``--only NAME``
(repeatable or comma-separated; see ``--list``), ``--repeat N`` (runs per scenario, default 3),
``--out DIR`` (default bench/results), ``--autogroup-nice N`` (scheduler priority of the jobs'
sessions, for a machine shared with other sessions). Scenarios run one after the other, never concurrently.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cost_windows, failover, report, stages, userfn_ref
from bench.suite import ORDER, SCENARIOS, TARGETS, collect, derive, repeats, run_once

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke-sized runs (seconds, not representative)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(ORDER)}); repeatable or comma-separated",
    )
    p.add_argument("--repeat", type=int, default=None, help="runs per job scenario (default 3; 1 with --quick)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--autogroup-nice",
        type=int,
        default=None,
        metavar="N",
        help="run each job's session (scheduler autogroup) at nice N, e.g. -20: on a machine shared with "
        "other sessions the job then gets close to all CPUs instead of one session's fair share. "
        "Needs root; it takes CPU from the other sessions while the suite runs",
    )
    return p


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for name in ORDER:
            what = (
                SCENARIOS[name].description
                if name in SCENARIOS
                else {
                    "cost": cost_windows.DESCRIPTION,
                    "stages": stages.DESCRIPTION,
                    "failover": failover.DESCRIPTION,
                    "userfn_ref": userfn_ref.DESCRIPTION,
                }[name]
            )
            print(f"{name:14} {what}")
        return 0
    wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or ORDER
    unknown = [n for n in wanted if n not in ORDER]
    if unknown:
        _log(f"error: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
        return 2
    if args.repeat is not None and args.repeat < 1:
        _log("error: --repeat must be >= 1")
        return 2
    command = " ".join(["python -m bench", *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    results: dict[str, Any] = {
        "schema": report.SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": args.quick,
        "autogroup_nice": args.autogroup_nice,
        "environment": report.environment(),
        "targets": dict(TARGETS),
        "scenarios": {},
        "derived": {},
    }
    started = time.monotonic()
    selected = [n for n in ORDER if n in wanted]
    rounds = [n for n in selected if n in SCENARIOS and repeats(SCENARIOS[n], args.quick, args.repeat) > 1]
    outcomes: dict[str, list[dict[str, Any] | str]] = {n: [] for n in selected if n in SCENARIOS}

    def save(name: str) -> tuple[Path, Path]:
        if name in SCENARIOS:
            results["scenarios"][name] = collect(SCENARIOS[name], args.quick, outcomes[name])
        results["derived"] = derive(results["scenarios"], results["environment"]["cpus"] or 1)
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        written = report.write(results, args.out)
        if "failover" in results:  # its own key and section: report.py knows the runtime scenarios only
            with written[1].open("a") as md:
                md.write(failover.markdown(results["failover"]))
        return written

    if rounds:
        total = max(repeats(SCENARIOS[n], args.quick, args.repeat) for n in rounds)
        _log(f"rounds of {', '.join(rounds)} ({total} rounds, interleaved)")
        for index in range(total):
            # Odd rounds run in reverse order (ABBA), so that no scenario always follows the same one.
            for name in rounds if index % 2 == 0 else list(reversed(rounds)):
                if index < repeats(SCENARIOS[name], args.quick, args.repeat):
                    outcomes[name].append(
                        run_once(SCENARIOS[name], args.quick, f"run {index + 1}/{total}", _log, args.autogroup_nice)
                    )
                    paths = save(name)
    for name in [n for n in selected if n not in rounds]:
        if name == "failover":
            _log(f"{name}: {failover.DESCRIPTION}")
            results["failover"] = failover.run(quick=args.quick, log=_log)
            paths = save(name)
            continue
        if name == "cost":
            _log(f"{name}: {cost_windows.DESCRIPTION}")
            results["scenarios"][name] = cost_windows.run_all(quick=args.quick, log=_log)
            paths = save(name)
            continue
        if name == "userfn_ref":
            _log(f"{name}: {userfn_ref.DESCRIPTION}")
            results["scenarios"][name] = userfn_ref.run(quick=args.quick, log=_log)
            paths = save(name)
            continue
        if name == "stages":
            _log(f"{name}: {stages.DESCRIPTION}")
            results["scenarios"][name] = stages.run(quick=args.quick, log=_log)
            paths = save(name)
            continue
        scenario = SCENARIOS[name]
        _log(f"{name}: {scenario.description}")
        times = repeats(scenario, args.quick, args.repeat)
        for index in range(times):
            outcomes[name].append(run_once(scenario, args.quick, f"run {index + 1}/{times}", _log, args.autogroup_nice))
        paths = save(name)
    json_path, md_path = paths
    failed = any(d.get("errors") for d in [*results["scenarios"].values(), results.get("failover", {})])
    _log(f"results: {json_path} and {md_path} ({results['elapsed_s']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
