"""Failover benchmark (issue 5): worker crash → the job processing records again, and savepoint upgrades.

Run: ``.venv/bin/python -m bench --only failover`` (results in bench/results/latest.{json,md}) or
``.venv/bin/python -m bench.failover [--crashes 10] [--upgrades 3] [--no-verify] [--restart-delay S]``
(prints JSON).

It starts the e2e test bed itself — the Kubernetes control plane (``tests/cluster``), the node
agent that runs pods as local processes, a SeaweedFS S3 server — and ``streamjob-operator`` as a
subprocess with its default settings. The job (``bench/jobs/failover_job.py``) is a steady-rate
keyed running sum with checkpoints to S3 every second and an exactly-once FileSink; a ``Stamp``
step chained after the keyed state writes the wall-clock time at which each attempt's task opened
(state restored) and processed its first record. Pods are local processes on one machine, so one
clock serves every timestamp.

**Crashes.** Every crash is measured as the *first* restart of the restart policy (the default one,
exponential from 1 s, unless ``--restart-delay`` sets its first delay): each crash gets a fresh
StreamJob (in a fresh namespace) that has completed at least two checkpoints. Crashing one job ten
times would measure the backoff (1, 2, 4, … s) instead (``tests/e2e`` crashes one job ten times for
correctness). The JobMaster recovers in place (issue 14): it cancels the surviving worker's tasks,
waits out the restart delay and redeploys from the latest checkpoint onto the survivor and the standby
worker (without one: waits for the replacement pod the operator creates); the run records that no
JobMaster pod was created. t0 = just before the node agent SIGKILLs the worker pod's process group;
t1 = the ``first`` stamp of the JobMaster's next attempt (the first record through the restored keyed
state). The breakdown times the steps in between from pod watch events, the JobMaster's log and the
stamps. Afterwards the job runs to its end and its committed output is checked exactly once.

**Standby workers.** The jobs run with ``standbyWorkers: 1`` (``--standby N`` changes it; 0 measures
recovery that waits for the replacement pod): one worker pod more than the slots need, idle as the
JobMaster's spare. The victim is a pod that holds a slot of the running attempt (its IP among
``GET /job``'s workers), never the standby, and the crash happens once the standby is registered
(``status.standbyWorkers``). The JobMaster then redeploys onto the survivor and the standby at once;
the replacement pod, created meanwhile, registers as the next spare (the last milestone).

**Upgrades.** One job, upgraded ``--upgrades`` times by changing an argument the pipeline ignores
(a spec change in upgradeMode savepoint: stop-with-savepoint, redeploy from it): t0 = the patch,
then the savepoint, the new attempt Running at the new generation and its first record.

Called by ``bench.__main__`` (``run``, ``markdown``) or from the command line (``main``); the test bed,
the jobs and the timeline probes are in ``bench/failover_bed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.failover_bed import (
    QUICK,
    BenchJob,
    FailoverSpec,
    Json,
    Log,
    Testbed,
    checkpointed,
    jobmaster_pods_created,
    pod_times,
    pods_timeline,
    relative,
    replacement_timeline,
    running,
    sj_first,
    spare_registered,
)
from bench.harness import percentile

TARGET_S = 1.0
SECTION_HEADING = "\n## Failover on the test bed (issue 5)"
DESCRIPTION = (
    "operator on the e2e test bed: worker pod SIGKILL → first record processed by the restored "
    "attempt (the JobMaster stays up and redeploys at once onto the standby worker, or without one waits for "
    "the replacement pod; the operator replaces only the crashed pod, which becomes the next standby; fresh "
    "job per crash: the restart policy's first retry), and savepoint upgrades"
)
CRASH_MILESTONES = (
    ("pod_failed", "crashed pod reported Failed (node agent)"),
    ("jm_restarting", "JobMaster noticed: tasks cancelled, restart in place (its log)"),
    ("replacement_created", "replacement worker pod created (operator)"),
    ("replacement_started", "replacement worker process started"),
    ("tasks_deployed", "slots registered, tasks deployed"),
    ("restored", "tasks opened (state restored), last subtask"),
    ("first_record", "first record processed (t1)"),
    ("all_processing", "every subtask processed a record"),
    ("spare_registered", "replacement registered as the new spare (JobMaster's log)"),
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


# -- the measurements ----------------------------------------------------------------------------------


def measure_crash(bed: Testbed, spec: FailoverSpec, index: int, log: Log) -> Json:
    """One fresh job, one worker crash after two checkpoints: the milestones in seconds after the SIGKILL."""
    namespace = bed.namespace(f"bench-fo-crash{index}")
    job = BenchJob(bed, namespace, spec, count=spec.crash_count)
    load = os.getloadavg()[0]
    try:
        job.create()
        before = job.wait(
            lambda s: checkpointed(s, 2) and (s.get("standbyWorkers") or 0) >= spec.standby,
            "two checkpoints and the standby workers ready",
            180,
        )
        old = int(before["attempt"])
        job.wait_processing(old, 30)
        time.sleep(spec.settle_s)
        if (job.status().get("restarts") or {}).get("count"):
            raise RuntimeError("the job restarted before the crash: not a first retry")
        victim = job.slot_holder(old)  # never the standby pod: its crash interrupts nothing
        before_attempt = job.last_attempt()
        t0 = time.time()
        bed.agent.crash(namespace, victim)
        stamps = job.wait_processing(before_attempt + 1, 120)
        if spec.standby:  # the replacement pod registers as the next spare (after the first record, usually)
            spare_registered(bed, job, old, t0, 60)
        after = job.status()
        assert bed.recorder is not None
        pods = bed.recorder.select(namespace, t0, "pod")
        points: dict[str, float | None] = {
            "pod_failed": pod_times(pods, victim).get("ended"),
            **replacement_timeline(bed, job, t0, old, victim),
            "restored": max(s["open"] for s in stamps),
            "first_record": min(s["first"] for s in stamps),
            "all_processing": max(s["first"] for s in stamps),
        }
        run: Json = {
            "namespace": namespace,
            "attempt": after.get("attempt"),
            "jobmaster_attempt": before_attempt + 1,
            "jobmaster_pods_created": jobmaster_pods_created(bed, job, t0),
            "restarts": (after.get("restarts") or {}).get("count"),
            "checkpoint_before": (before.get("lastCheckpoint") or {}).get("id"),
            "load_average_before": round(load, 2),
            "milestones_s": relative(t0, points),
            "crash_to_processing_s": round(points["first_record"] - t0, 3),  # type: ignore[operator]
        }
        log(
            f"  failover crash {index + 1}/{spec.crashes}: processing again after {run['crash_to_processing_s']:.2f} s "
            f"(JobMaster pods created: {run['jobmaster_pods_created'] or 'none'}, load {load:.2f})"
        )
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
    before = job.wait(
        lambda s: checkpointed(s, 1) and bool((s.get("deployment") or {}).get("stable")), "a stable job", 180
    )
    old = int(before["attempt"])
    job.wait_processing(old, 30)
    time.sleep(job.spec.settle_s)
    load = os.getloadavg()[0]
    generation = int(bed.api.get(job.path)["metadata"]["generation"]) + 1

    def upgraded(s: Json) -> bool:
        return running(s) and (s.get("deployment") or {}).get("generation") == generation

    t0 = time.time()
    bed.api.merge_patch(job.path, {"spec": {"args": job.args(f"v{number}")}})
    job.wait(upgraded, "Running at the new spec", 180)
    new = int(job.status()["attempt"])
    stamps = job.wait_processing(new, 60)
    assert bed.recorder is not None
    sj = bed.recorder.select(job.namespace, t0, "sj")
    points: dict[str, float | None] = {
        "detected": sj_first(sj, lambda s: (s.get("operation") or {}).get("kind") == "upgrade"),
        "savepoint_requested": sj_first(sj, lambda s: bool((s.get("snapshotRequest") or {}).get("requestId"))),
        "savepoint_done": sj_first(sj, lambda s: (s.get("operation") or {}).get("step") == "teardown"),
        **pods_timeline(bed, job, t0, old, new),
        "status_running": sj_first(sj, upgraded),
        "first_record": min(s["first"] for s in stamps),
    }
    at_running = points["status_running"]
    return {
        "namespace": job.namespace,
        "attempt": new,
        "restored_from": job.status().get("restoreFrom"),
        "load_average_before": round(load, 2),
        "milestones_s": relative(t0, points),
        "to_running_s": round(at_running - t0, 3) if at_running is not None else None,
        "to_first_record_s": round(min(s["first"] for s in stamps) - t0, 3),
    }


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
            log(
                f"  failover upgrade {number}/{spec.upgrades}: Running after {run['to_running_s']} s, "
                f"first record after {run['to_first_record_s']} s (load {run['load_average_before']:.2f})"
            )
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
    return {
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "max": max(values) if values else None,
        "n": len(values),
    }


def summarise(crashes: list[Json], upgrades: list[Json]) -> Json:
    """Percentiles of every milestone; the target verdict."""

    def milestones(runs: list[Json], names: tuple[tuple[str, str], ...]) -> Json:
        return {
            key: _stats([r["milestones_s"][key] for r in runs if r["milestones_s"].get(key) is not None])
            for key, _ in names
        }

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
    bed = Testbed(root, log, spec.pythonpath)
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
    from bench.report import environment

    return {
        "description": DESCRIPTION,
        "spec": asdict(spec),
        "environment": environment(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "crashes": crashes,
        "upgrades": upgrades,
        "errors": errors,
        "elapsed_s": round(time.monotonic() - started, 1),
        "summary": summarise(crashes, upgrades) if crashes or upgrades else None,
    }


# -- the report ----------------------------------------------------------------------------------------


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(section: Json) -> str:
    """The failover section of latest.md."""
    s = section.get("summary")
    lines = [SECTION_HEADING, "", section["description"] + ".", ""]
    if s is None:
        return "\n".join([*lines, "No measurement: " + "; ".join(e[:300] for e in section.get("errors") or ["–"]), ""])
    spec = section["spec"]
    head = s["crash_to_processing_s"]

    def load_range(runs: list[Json]) -> str:
        loads = [r["load_average_before"] for r in runs]
        return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"

    met = "yes" if s["target_met"] else "NO"
    delay = spec.get("restart_delay_s")
    policy = "default restart policy (1 s delay)" if delay is None else f"restart delay {delay:g} s"
    env = section.get("environment") or {}
    lines += [
        f"Measured {section.get('created', '')} at {str(env.get('git_commit', ''))[:10]} on {env.get('cpus')} CPUs. "
        f"Job: parallelism {spec['parallelism']}, {spec['rate']} records/s, {spec['keys']} keys of keyed state, "
        f"checkpoints to S3 every {spec['interval_ms']} ms, exactly-once FileSink; operator with its default "
        f"settings, {policy}, standbyWorkers {spec.get('standby', 0)}. The JobMaster recovers in place "
        f"(issue 14){' onto the standby worker' if spec.get('standby') else ''}. Load average (1 min) before "
        "the crashes: "
        f"{load_range(section['crashes'])}, before the upgrades: {load_range(section['upgrades'])} (2 cores, shared "
        f"with other sessions' test suites). Exactly-once output after every run: "
        f"{'yes' if s['exactly_once'] else ('–' if s['exactly_once'] is None else 'NO')}.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| crash → processing again ≤ {s['target_s']:.1f} s (p50 over {head['n']} crashes) "
        f"| p50 {_f(head['p50'])} s, p90 {_f(head['p90'])} s, max {_f(head['max'])} s | {met} |",
        "",
        "Where the time goes (seconds after the SIGKILL; each milestone's own percentiles):",
        "",
        "| milestone | p50 | p90 | max |",
        "|---|---:|---:|---:|",
    ]
    for key, what in CRASH_MILESTONES:
        m = s["crash_milestones_s"][key]
        lines.append(f"| {what} | {_f(m['p50'])} | {_f(m['p90'])} | {_f(m['max'])} |")
    lines += _comparison(section)
    up, first = s["upgrade_to_running_s"], s["upgrade_to_first_record_s"]
    if first["n"]:
        lines += [
            "",
            f"Savepoint upgrades ({first['n']} runs; seconds after the spec change): Running at the new "
            f"spec p50 {_f(up['p50'])} s (max {_f(up['max'])} s), first record p50 {_f(first['p50'])} s "
            f"(max {_f(first['max'])} s).",
            "",
            "| milestone | p50 | max |",
            "|---|---:|---:|",
        ]
        for key, what in UPGRADE_MILESTONES:
            m = s["upgrade_milestones_s"][key]
            lines.append(f"| {what} | {_f(m['p50'])} | {_f(m['max'])} |")
    if section.get("errors"):
        lines += ["", "Errors:", ""] + [f"- {e.splitlines()[0][:300]}" for e in section["errors"]]
    return "\n".join(lines) + "\n"


def _comparison(section: Json) -> list[str]:
    """A same-window run without standby workers and a note on the run, when the section holds them."""
    lines: list[str] = []
    base = section.get("baseline_standby_0")
    if base:
        head, loads = base["summary"]["crash_to_processing_s"], base["summary"]["load_average_before"]
        deployed = base["summary"]["crash_milestones_s"]["tasks_deployed"]
        lines += [
            "",
            f"Without standby workers (`--standby 0`, a run right after this one, {base['created']}, same "
            f"commit, load {min(loads):.1f}–{max(loads):.1f}): p50 {_f(head['p50'])} s, p90 {_f(head['p90'])} s, "
            f"max {_f(head['max'])} s over {head['n']} crashes; tasks deployed p50 {_f(deployed['p50'])} s, "
            "as the JobMaster waits for the replacement pod to start and register.",
        ]
    if section.get("note"):
        lines += ["", f"Note: {section['note']}."]
    return lines


def append_results(section: Json, out_dir: Path) -> None:
    """Puts ``section`` into an existing ``latest.json`` / ``latest.md`` (replacing an older failover section).

    The runtime scenarios and the failover need different set-ups (the failover starts the e2e bed);
    this adds a failover measurement to the report of the last suite run without re-running it.
    """
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results["failover"] = section
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    text = md_path.read_text() if md_path.exists() else "# streamjob benchmark results\n"
    md_path.write_text(text.split(SECTION_HEADING)[0].rstrip("\n") + "\n" + markdown(section))


def main(argv: list[str] | None = None) -> int:
    """Command line: measures and prints the results as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.splitlines()[0])
    p.add_argument("--crashes", type=int, default=FailoverSpec.crashes)
    p.add_argument("--upgrades", type=int, default=FailoverSpec.upgrades)
    p.add_argument("--no-verify", action="store_true", help="skip waiting for the end and the exactly-once check")
    p.add_argument(
        "--restart-delay",
        type=float,
        metavar="SECONDS",
        help="restartPolicy.backoff.initialDelaySeconds of the jobs (default: the default policy's 1 s)",
    )
    p.add_argument(
        "--standby",
        type=int,
        default=FailoverSpec.standby,
        metavar="N",
        help="spec.standbyWorkers of the jobs (default 1; 0 for A/B runs against trees without it)",
    )
    p.add_argument(
        "--pythonpath",
        help="A/B runs: a directory holding another streamjob/{worker,operator} tree "
        "(bench/README.md) for the operator and the pods",
    )
    p.add_argument(
        "--append-to",
        type=Path,
        metavar="DIR",
        help="also put the results into DIR/latest.{json,md} (e.g. bench/results), replacing an older "
        "failover section and keeping the rest",
    )
    args = p.parse_args(argv)
    spec = FailoverSpec(
        crashes=args.crashes,
        upgrades=args.upgrades,
        verify=not args.no_verify,
        pythonpath=args.pythonpath,
        restart_delay_s=args.restart_delay,
        standby=args.standby,
    )
    section = run(log=lambda text: print(text, file=sys.stderr, flush=True), spec=spec)
    print(json.dumps(section, indent=1))
    print(markdown(section), file=sys.stderr)
    if args.append_to is not None:
        append_results(section, args.append_to)
    return 1 if section["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
