"""Writes the suite's results: ``latest.json`` (everything measured) and ``latest.md`` (the table).

Called by ``bench.__main__`` after every scenario, so an interrupted suite still leaves the
results of the scenarios that finished.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.suite import ALIGNED_BEHIND_SLOW_SINK, CHECKPOINTED, LONG, TARGETS, USERFN

SCHEMA = 1


def environment() -> dict[str, Any]:
    """The machine and the code measured."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent
            ).stdout.strip()
        except OSError:
            return ""

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_worker": bool(git("status", "--porcelain", "worker")),
    }


def _fmt(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int | float):
        text = f"{value:,.{digits}f}"
        return f"{text}{unit}"
    return str(value)


def _noise(spread: dict[str, Any]) -> str:
    if spread["median"] is None:
        return "–"
    return f"{spread['min']:,.0f}–{spread['max']:,.0f} (±{spread['spread_pct'] / 2:.0f} %)"


def _loads(results: dict[str, Any]) -> str:
    loads = [
        load
        for d in results["scenarios"].values()
        for r in d.get("runs", [])
        for load in [r.get("load_average_before")]
        if load is not None
    ]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"


def _priority(results: dict[str, Any]) -> str:
    nice = results.get("autogroup_nice")
    if nice is None:
        return (
            "Jobs ran at normal priority: on a machine shared with other sessions the kernel gives the job's "
            "session (all its processes together) one session's share of the CPUs, so wall-clock figures "
            "mostly measure the other load; see the CPU view."
        )
    return (
        f"Jobs ran with their session's scheduler autogroup at nice {nice} (`--autogroup-nice`), so that they "
        "got close to the whole machine although other sessions were busy; the CPU share column shows how "
        "close."
    )


def _cost_text(derived: dict[str, Any]) -> str:
    """Each parallelism's checkpointing cost: medians and every round, wall-clock and CPU."""
    wall, cpu = derived.get("checkpoint_cost_pct", {}), derived.get("checkpoint_cost_cpu_pct", {})
    wall_rounds = derived.get("checkpoint_cost_rounds_pct", {})
    cpu_rounds = derived.get("checkpoint_cost_cpu_rounds_pct", {})
    parts = []
    for base, value in wall.items():
        text = f"{base}: {value} % events/s (rounds: {', '.join(f'{x} %' for x in wall_rounds.get(base, []))})"
        if base in cpu:
            text += f", {cpu[base]} % CPU/event (rounds: {', '.join(f'{x} %' for x in cpu_rounds.get(base, []))})"
        parts.append(text)
    return "; ".join(parts) or "–"


def _cost_windows_section(cost: dict[str, Any] | None) -> list[str]:
    """The within-job measurement of the checkpointing cost: every ON window's figures."""
    if not cost or not cost.get("by_parallelism"):
        return []
    plan = next(iter(cost["by_parallelism"].values()))["plan"]
    lines = [
        "",
        "## Cost of checkpointing every 1 s, within one job",
        "",
        f"One job per parallelism (the keyed sum, unbounded, 10,000 keys) runs {2 * plan['on_windows'] + 1} "
        f"windows of {plan['window_s']:g} s: OFF, ON, OFF, …; in an ON window an exactly-once checkpoint is "
        f"triggered every {plan['interval_s']:g} s (`POST /checkpoints`), in an OFF window none. Each ON window "
        "is compared with the mean of the OFF windows either side (a linear drift of the machine cancels). "
        "CPU is the slot processes' (all threads). 95 % CI: of the mean over the ON windows. Direct: the CPU "
        "time the tasks spent on checkpoint work (`cpu_ms` of `GET /checkpoints`, every thread) over the "
        "slots' CPU time in the ON windows.",
        "",
        "| parallelism | direct: checkpoint CPU / slot CPU | checkpoint CPU ms (p50, all tasks) "
        "| cost events/s: median | mean (95 % CI) | cost CPU/event: median | mean (95 % CI) "
        "| checkpoints | ckpt p50 / p99 ms | JobMaster CPU ms per checkpoint | events/s OFF (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for base, run in cost["by_parallelism"].items():
        wall, cpu = run["costs"]["wall"], run["costs"]["cpu"]
        off = [w["figures"]["events_per_s"] for w in run["windows"] if w["kind"] == "off" and w.get("figures")]
        off_median = sorted(off)[len(off) // 2] if off else None
        lines.append(
            f"| {base} | {_fmt(run.get('direct_cost_pct'), 2, ' %')} "
            f"| {_fmt(run.get('checkpoint_cpu_ms_p50'), 1)} "
            f"| {_fmt(wall['median'], 1, ' %')} | {_fmt(wall['mean'], 1, ' %')} ({_ci(wall)}) "
            f"| {_fmt(cpu['median'], 1, ' %')} | {_fmt(cpu['mean'], 1, ' %')} ({_ci(cpu)}) "
            f"| {run['checkpoints_completed']}/{run['checkpoints_triggered']} "
            f"| {_fmt(run['checkpoint_ms_p50'])} / {_fmt(run['checkpoint_ms_p99'])} "
            f"| {_fmt(run['jobmaster_cpu_ms_per_checkpoint'], 1)} | {_fmt(off_median)} |"
        )
    lines.append("")
    for base, run in cost["by_parallelism"].items():
        lines.append(
            f"{base} windows (cost events/s): {', '.join(f'{x} %' for x in run['costs']['wall']['windows'])}; "
            f"(cost CPU/event): {', '.join(f'{x} %' for x in run['costs']['cpu']['windows'])}"
        )
    return lines


def _pair(ci: list[float] | None) -> str:
    return f"{ci[0]:.1f} … {ci[1]:.1f} %" if ci else "–"


def _ci(summary: dict[str, Any]) -> str:
    ci = summary.get("ci95")
    return f"{ci[0]:.1f} … {ci[1]:.1f} %" if ci else "–"


def _userfn_section(sc: dict[str, Any]) -> list[str]:
    """The user-function job against the same work as a plain Python loop (``userfn_ref``)."""
    ref = (sc.get("userfn_ref") or {}).get("summary")
    rows = [(n, sc[n]["summary"]) for n in USERFN if sc.get(n, {}).get("summary")]
    if not ref and not rows:
        return []
    lines = [
        "",
        "## User functions: the job against a plain Python loop",
        "",
        "The user-function job (`bench/jobs/user_fn.py`) and `userfn_ref`, the same callbacks over the same "
        "events in one Python process without streamjob. Processing: records / (last − first record at the "
        "sinks); whole process: records / the `streamjob run` process's wall clock, start-up included.",
        "",
        "| scenario | events/s processing | events/s whole process | CPU ns/event | × plain loop (events/s) |",
        "|---|---:|---:|---:|---:|",
    ]
    ref_eps = ref["events_per_s"] if ref else None
    for name, s in rows:
        eps, process = s["events_per_s"]["median"], (s.get("process_s") or {}).get("median")
        records = sc[name]["spec"]["records"]
        ratio = f"{eps / ref_eps:.2f}" if eps and ref_eps else "–"
        lines.append(
            f"| {name} | {_fmt(eps)} | {_fmt(records / process if process else None)} "
            f"| {_fmt(s['cpu_ns_per_event']['median'])} | {ratio} |"
        )
    if ref:
        lines.append(
            f"| userfn_ref (plain loop) | {_fmt(ref['events_per_s'])} | – | {_fmt(ref['cpu_ns_per_event'])} | 1.00 |"
        )
        two = ref.get("two_processes_events_per_s")
        if two and ref_eps:
            lines.append(f"| userfn_ref × 2 processes (the p=2 ceiling) | {_fmt(two)} | – | – | {two / ref_eps:.2f} |")
        if ref.get("wall_s"):
            lines += [
                "",
                f"The plain loop alone takes {ref['wall_s']:.2f} s for {sc['userfn_ref']['records']:,} events (no "
                "interpreter start-up counted): no Python program calling these callbacks per event is faster on this "
                "machine, and two such loops at once are the most p=2 can reach.",
            ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The human-readable report."""
    env = results["environment"]
    lines = [
        "# streamjob benchmark results",
        "",
        f"Command: `{results['command']}` — {results['created']} — "
        f"{'QUICK smoke run (not representative)' if results['quick'] else 'full run'}",
        "",
        f"Machine: {env['cpus']} CPUs, {env['memory_mb']:,} MB, Python {env['python']} ({env['platform']}); "
        f"code at {env['git_commit'][:10]}{' (worker/ modified)' if env['git_dirty_worker'] else ''}. "
        f"Load average before the runs: {_loads(results)}.",
        "",
        _priority(results),
        "",
        "Throughput is records / (last record − first record) at the sinks (start-up excluded, reported "
        "separately); figures are the median of the runs, the range shows the noise. Checkpoint durations "
        "are the periodic checkpoints' (trigger to `_metadata` written), the final checkpoint of a bounded "
        "job excluded. Peak RSS is the VmHWM of the slot processes. CPU ns/event is the CPU time of the slot "
        "processes (all threads) between the first and the last record, per event: much less disturbed by "
        "other load than wall time; at p=2 it is the sum over both slots. Process s is the wall clock of the "
        "whole `streamjob run` process (start-up, records, final checkpoint, shutdown).",
        "",
        "| scenario | runs | events/s (median) | range | CPU ns/event | wall s | start-up s | process s | checkpoints "
        "| ckpt p50 ms | ckpt p99 ms | slot peak RSS MB |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, data in results["scenarios"].items():
        if name in ("stages", "cost", "userfn_ref"):
            continue
        s = data.get("summary")
        if s is None:
            lines.append(f"| {name} | 0 | FAILED | | | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {len(data['runs'])} | {_fmt(s['events_per_s']['median'])} | {_noise(s['events_per_s'])} "
            f"| {_fmt(s['cpu_ns_per_event']['median'])} | {_fmt(s['wall_s']['median'], 2)} "
            f"| {_fmt(s['startup_s']['median'], 2)} | {_fmt((s.get('process_s') or {}).get('median'), 2)} "
            f"| {s['checkpoint_count']} "
            f"| {_fmt(s['checkpoint_ms_p50'])} | {_fmt(s['checkpoint_ms_p99'])} "
            f"| {_fmt(s['max_slot_peak_rss_mb'], 1)} |"
        )
    derived = results.get("derived", {})
    lines += ["", "## Against the targets (issue 4)", "", "| target | measured | met |", "|---|---|---|"]
    sc = results["scenarios"]

    def median(name: str) -> Any:
        s = sc.get(name, {}).get("summary")
        return s["events_per_s"]["median"] if s else None

    met = derived.get("targets", {})
    lines.append(
        f"| ≥ {TARGETS['p1_events_per_s']:,} events/s at p=1, checkpointing off | {_fmt(median('p1'))} "
        f"| {_fmt(met.get('p1_events_per_s'))} |"
    )
    lines.append(
        f"| ≥ {TARGETS['p2_events_per_s']:,} events/s at p=2, checkpointing off | {_fmt(median('p2'))} "
        f"| {_fmt(met.get('p2_events_per_s'))} |"
    )
    windowed = derived.get("checkpoint_cost_windows_pct")
    if windowed:
        measured = "; ".join(
            f"{base}: direct {c['direct']} % of the slots' CPU; windows {c['wall']} % events/s "
            f"(95 % CI {_pair(c['wall_ci'])}), {c['cpu']} % CPU/event (95 % CI {_pair(c['cpu_ci'])})"
            for base, c in windowed.items()
        )
        lines.append(
            f"| checkpoint every 1 s costs ≤ {TARGETS['checkpoint_cost_pct_max']:.0f} % (within one job: the "
            "slots' checkpoint CPU over their CPU, met if ≤ 5 % and the comparison of windows with and "
            "without checkpoints does not show more: the low end of its 95 % interval ≤ 5 %) "
            f"| {measured} | {_fmt(met.get('checkpoint_cost'))} |"
        )
    lines.append(
        f"| (second view, not judged: separate runs, median over rounds of {LONG // 1_000_000}M-event "
        f"pairs{'' if windowed else '; judged when the cost scenario did not run'}) | {_cost_text(derived)} "
        f"| {_fmt(None if windowed else met.get('checkpoint_cost'))} |"
    )

    def p50_text(name: str) -> str:
        s = sc[name]["summary"]
        if s["checkpoint_count"]:
            return f"{name}: {_fmt(s['checkpoint_ms_p50'])} ms"
        return (
            f"{name}: no periodic checkpoint (records flowed {_fmt(s['wall_s']['median'], 2)} s, "
            "less than the 1 s interval; the _long scenarios measure them)"
        )

    p50s = ", ".join(p50_text(n) for n in CHECKPOINTED if sc.get(n, {}).get("summary"))
    lines.append(
        f"| checkpoint p50 ≤ {TARGETS['checkpoint_p50_ms_max']:.0f} ms (10k keys) | {p50s or '–'} "
        f"| {_fmt(met.get('checkpoint_p50'))} |"
    )
    bp = sc.get("backpressure", {}).get("summary")
    if bp:
        mem = bp["memory"]
        lines.append(
            f"| memory bounded with a slow sink | growth {_fmt(mem['rss_growth_mb'], 1)} MB "
            f"while records flow (after the first 20 %), peak {_fmt(bp['max_slot_peak_rss_mb'], 1)} MB "
            f"| {_fmt(met.get('memory_bounded_under_backpressure', mem['bounded']))} |"
        )
    capacity = derived.get("capacity_events_per_s", {})
    if capacity:
        lines += [
            "",
            "## CPU view (for a loaded machine)",
            "",
            "Wall-clock figures above depend on how much CPU other processes leave. Below: the share of a "
            "core each slot got while records flowed, and the throughput the measured CPU cost per event "
            "allows if each slot had a core of its own (min(p, CPUs) × 10⁹ / CPU ns per event; ignores the "
            "JobMaster and waits — an estimate, not a measurement).",
            "",
            "| scenario | CPU share per slot | CPU ns/event | CPU-bound capacity, events/s |",
            "|---|---:|---:|---:|",
        ]
        for name, value in capacity.items():
            s = sc[name]["summary"]
            lines.append(
                f"| {name} | {_fmt(s['cpu_share_per_slot']['median'], 2)} "
                f"| {_fmt(s['cpu_ns_per_event']['median'])} | {_fmt(value)} |"
            )
        cpu_cost = derived.get("checkpoint_cost_cpu_pct", {})
        if cpu_cost:
            listed = ", ".join(f"{k}: {v} %" for k, v in cpu_cost.items())
            lines += [
                "",
                f"Checkpointing every 1 s, cost in CPU per event (median over rounds of the "
                f"{LONG // 1_000_000}M-event pairs): {listed}. A negative cost is noise: the runs of a pair "
                "differ by more than checkpointing costs.",
            ]
    lines += _cost_windows_section(sc.get("cost"))
    lines += _userfn_section(sc)
    parts = [(n, sc[n]["summary"]["checkpoint_parts_p50_ms"]) for n in CHECKPOINTED if sc.get(n, {}).get("summary")]
    if parts:
        lines += [
            "",
            "## Checkpoint phases (p50, ms; max over subtasks as the JobMaster reports them)",
            "",
            "| scenario | alignment | sync | async |",
            "|---|---:|---:|---:|",
        ]
        for name, p in parts:
            lines.append(
                f"| {name} | {_fmt(p['alignment_ms'], 1)} | {_fmt(p['sync_ms'], 1)} | {_fmt(p['async_ms'], 1)} |"
            )
    if bp:
        lines += ["", "## Backpressure: slot RSS over time (MB, sum over slots)", ""]
        runs = sc["backpressure"]["runs"]
        if runs:
            samples = runs[-1]["rss_samples"]
            step = max(1, len(samples) // 12)
            cells = []
            for sample in samples[::step]:
                total = sum(v for k, v in sample.items() if k not in ("t", "jobmaster")) / 1024
                cells.append(f"{sample['t']:.1f} s: {total:.0f}")
            lines.append(", ".join(cells))
            lines.append("")
            lines.append(f"Time the producers waited for credit (s): {bp.get('backpressured_s') or '–'}")
    aligned = [(n, sc[n]["summary"]) for n in ALIGNED_BEHIND_SLOW_SINK if sc.get(n, {}).get("summary")]
    if aligned:
        lines += [
            "",
            "## Aligned checkpoints behind a sink sleeping 1 ms per record (p=2, every 1 s)",
            "",
            "| scenario | checkpoints | p50 ms | max ms | backpressure shown after (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, s in aligned:
            lines.append(
                f"| {name} | {s['checkpoint_count']} | {_fmt(s['checkpoint_ms_p50'])} | "
                f"{_fmt(s.get('checkpoint_ms_max'))} | {s.get('backpressure_shown_s') or '–'} |"
            )
    stages = sc.get("stages")
    if stages and stages.get("stages"):
        lines += [
            "",
            "## Per-record cost of each stage (in-process CPU ns/record, best of runs)",
            "",
            "| stage | ns/record | what |",
            "|---|---:|---|",
        ]
        for row in stages["stages"]:
            lines.append(f"| {row['name']} | {_fmt(row.get('ns_per_record'))} | {row['what']} |")
    errors = [(n, e) for n, d in sc.items() for e in d.get("errors", [])]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {n}: {e.splitlines()[0]}" for n, e in errors]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Writes ``latest.json`` and ``latest.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
