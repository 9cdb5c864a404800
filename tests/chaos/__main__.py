"""``python -m tests.chaos``: a chaos campaign on a test bed of its own (``make chaos`` calls it).

    python -m tests.chaos --seed 7 --faults 15            # one run: replays seed 7's schedule
    python -m tests.chaos --seeds 1-12 --faults 20 --report bench/results/chaos-$(date +%F).md
    python -m tests.chaos --seed 7 --faults 15 --kinds kill-worker,rescale --print-schedule

Exit status 0 when every run is exact (nothing lost or duplicated, keyed state exact, no
unrequested empty state, every run finished), 1 otherwise (the failing seeds and their schedules
are printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.schedule import INDEPENDENT, KINDS, check_kinds, format_schedule, make_schedule


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip("-"):
            low, high = part.split("-", 1)
            seeds += range(int(low), int(high) + 1)
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}; give e.g. 7, 1-5 or 1,4,9")
    return seeds


def _kinds(text: str) -> tuple[str, ...]:
    if text == "independent":
        return INDEPENDENT
    if text == "all":
        return KINDS
    try:
        return check_kinds([k.strip() for k in text.split(",") if k.strip()])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="one run with this seed")
    which.add_argument("--seeds", type=_seeds, help="runs with these seeds: 1-12 or 1,4,9")
    parser.add_argument("--faults", type=int, default=15, help="faults per run (default 15)")
    parser.add_argument(
        "--kinds",
        type=_kinds,
        default=KINDS,
        help=f"comma-separated fault kinds, 'independent' or 'all' (default: all of {', '.join(KINDS)})",
    )
    parser.add_argument("--report", type=Path, help="write the campaign's figures (markdown) here")
    parser.add_argument("--root", type=Path, help="bed directory (default: a new /tmp/streamjob-chaos-*)")
    parser.add_argument("--keep", action="store_true", help="keep the bed directory after a clean campaign")
    parser.add_argument("--print-schedule", action="store_true", help="print the schedule(s) and exit")
    args = parser.parse_args(argv)
    if args.faults < 0:
        parser.error(f"--faults must be >= 0, got {args.faults}")
    args.seed_list = args.seeds or [args.seed if args.seed is not None else 1]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.print_schedule:
        for seed in args.seed_list:
            print(format_schedule(seed, make_schedule(seed, args.faults, args.kinds)))
        return 0
    from tests.chaos.bed import ChaosBed
    from tests.chaos.campaign import Campaign, keep_or_remove, markdown, run_seed

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    root = args.root or Path(tempfile.mkdtemp(prefix="streamjob-chaos-"))
    campaign = Campaign(args.faults, args.kinds)
    bed = ChaosBed.standalone(root, log)
    try:
        for seed in args.seed_list:
            campaign.runs.append(run_seed(bed, seed, args.faults, args.kinds, log))
    finally:
        bed.stop()
        if campaign.runs:
            (root / "campaign.json").parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"totals": campaign.totals(), "runs": [r.as_json() for r in campaign.runs]}, indent=1)
            if args.report:
                args.report.parent.mkdir(parents=True, exist_ok=True)
                args.report.write_text(markdown(campaign))
                args.report.with_suffix(".json").write_text(text)
                log(f"chaos: report in {args.report}")
    totals = campaign.totals()
    log(
        f"chaos: {totals['runs']} runs, {totals['faults']} faults, {totals['failed_runs']} failed; lost "
        f"{totals['lost']}, duplicated {totals['duplicated']}, unrequested empty states {totals['unrequested_empty']}"
    )
    for r in campaign.runs:
        if not r.ok:
            log(f"FAILED seed {r.seed}: replay with `{r.replay(args.kinds)}`")
    keep_or_remove(root, campaign.ok, args.keep, log)
    return 0 if campaign.ok else 1


if __name__ == "__main__":
    sys.exit(main())
