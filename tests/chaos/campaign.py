"""A chaos campaign: runs seeds one after another on one bed, judges each, reports the figures.

``run_seed`` makes the schedule, creates the job in a fresh namespace with a fresh operator,
executes the steps, collects the observations and judges them; a failing run prints its seed and
schedule so that ``python -m tests.chaos --seed N --faults K`` replays it. ``markdown`` renders a
campaign's figures (faults by kind, runs, lost, duplicated, unrequested empty states, wall time)
for ``bench/results/chaos-<date>.md``. Called by ``__main__`` and ``test_chaos.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.bed import ChaosBed, Log, wait_for
from tests.chaos.checker import Observations, Verdict, check
from tests.chaos.executor import NAME, ChaosJob, Executor, Sizes, environment_note
from tests.chaos.observe import jobmaster_observations, read_rows
from tests.chaos.schedule import DEPENDS_ON, KINDS, Step, format_schedule, make_schedule


@dataclass
class RunResult:
    """One seed's run."""

    seed: int
    steps: list[Step]
    verdict: Verdict
    seconds: float
    namespace: str
    deployments: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    step_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.failure is None

    def replay(self, kinds: tuple[str, ...]) -> str:
        """The command that replays this run's schedule."""
        extra = "" if set(kinds) == set(KINDS) else f" --kinds {','.join(kinds)}"
        return f"python -m tests.chaos --seed {self.seed} --faults {len(self.steps)}{extra}"

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "namespace": self.namespace,
            "deployments": self.deployments,
            "failure": self.failure,
            "verdict": self.verdict.as_json(),
            "steps": self.step_results,
        }


def run_seed(
    bed: ChaosBed, seed: int, faults: int, kinds: tuple[str, ...], log: Log, sizes: Sizes | None = None
) -> RunResult:
    """One run: schedule → job → faults → observations → verdict."""
    sizes = sizes or Sizes()
    steps = make_schedule(seed, faults, kinds)
    log(format_schedule(seed, steps))
    started = time.time()
    namespace = bed.namespace(f"chaos-s{seed}")
    run_dir = bed.root / "runs" / namespace
    run_dir.mkdir(parents=True)
    count = sizes.per_step * (len(steps) + 1)
    job = ChaosJob(bed, namespace, run_dir, count, sizes)
    executor = Executor(bed, job, log)
    bed.operator.start(namespace)
    try:
        try:
            finished = executor.run(steps)
        except Exception as err:  # a bed error (API, S3) ends this run as failing; the campaign goes on
            executor.failure = executor.failure or f"executor error: {err!r}"
            finished = False
        if bed.s3.proc is None or bed.s3.proc.poll() is not None:
            bed.s3.start()
        client = bed.s3.endpoint().client()
        bucket = bed.s3.endpoint().bucket
        epochs = [read_rows(client, bucket, f"{job.prefix}/out-e{e}") for e in range(job.epoch + 1)]
        deployments, completed = jobmaster_observations(bed.agent, namespace, NAME)
        observations = Observations(
            count, sizes.keys, epochs, deployments, completed, frozenset(executor.empty_lineages), finished
        )
        verdict = check(observations)
        if executor.failure:
            verdict.problems.insert(0, executor.failure)
    finally:
        _cleanup(bed, job, log)
        bed.operator.stop()
    shown = [
        {"attempt": d.attempt, "job_id": d.job_id, "restored_from": d.restored_from}
        for d in sorted(deployments, key=lambda d: d.started_at)
    ]
    result = RunResult(
        seed,
        steps,
        verdict,
        time.time() - started,
        namespace,
        shown,
        failure=executor.failure,
        step_results=[r.as_json() for r in executor.results],
    )
    (run_dir / "result.json").write_text(json.dumps(result.as_json(), indent=1, default=str))
    for r in executor.results:
        log(f"    #{r.step.index} {r.step.kind}: {r.hit or r.error} ({r.seconds:.0f}s)")
    if result.ok:
        log(f"seed {seed}: OK — {verdict.rows} rows, {len(deployments)} deployments, {result.seconds:.0f}s")
    else:
        log(f"seed {seed}: FAILED ({run_dir}):\n  " + "\n  ".join(verdict.problems))
        log(f"replay: {result.replay(kinds)}\n{format_schedule(seed, steps)}")
    return result


def _cleanup(bed: ChaosBed, job: ChaosJob, log: Log) -> None:
    """Deletes the StreamJob and waits for its pods to go (pods share the host's ports)."""
    try:
        if not bed.operator.alive:
            bed.operator.start()
        bed.api.delete(job.path)
        wait_for(lambda: not _exists(bed, job.path), 90, "the StreamJob's deletion")
        wait_for(lambda: not bed.api.get(f"/api/v1/namespaces/{job.namespace}/pods")["items"], 90, "the pods to go")
        bed.api.delete(f"/api/v1/namespaces/{job.namespace}")
    except Exception as err:  # cleanup is best effort; the next run uses a fresh namespace
        log(f"chaos: cleaning up {job.namespace} failed: {err}")


def _exists(bed: ChaosBed, path: str) -> bool:
    try:
        bed.api.get(path)
    except Exception:
        return False
    return True


@dataclass
class Campaign:
    """The runs of one campaign and its settings."""

    faults: int
    kinds: tuple[str, ...]
    runs: list[RunResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    environment: str = field(default_factory=environment_note)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def totals(self) -> dict[str, Any]:
        by_kind: Counter[str] = Counter(s.kind for r in self.runs for s in r.steps)
        hit: Counter[str] = Counter(
            x["kind"] for r in self.runs for x in r.step_results if x["hit"] and not x["hit"].startswith("missed")
        )
        return {
            "injected": sum(hit.values()), "injected_by_kind": dict(hit),
            "runs": len(self.runs), "failed_runs": sum(not r.ok for r in self.runs),
            "faults": sum(len(r.steps) for r in self.runs), "faults_by_kind": dict(by_kind),
            "lost": sum(r.verdict.lost for r in self.runs), "duplicated": sum(r.verdict.duplicated for r in self.runs),
            "wrong_state_keys": sum(r.verdict.wrong_state_keys for r in self.runs),
            "unrequested_empty": sum(len(r.verdict.unrequested_empty) for r in self.runs),
            "stuck": sum(r.failure is not None for r in self.runs),
            "rows": sum(r.verdict.rows for r in self.runs), "deployments": sum(len(r.deployments) for r in self.runs),
            "wall_s": round(sum(r.seconds for r in self.runs), 1),
        }  # fmt: skip


def markdown(c: Campaign) -> str:
    """The campaign's report (``bench/results/chaos-<date>.md``)."""
    t = c.totals()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.started))
    lines = [
        f"# Chaos campaign, {date}", "",
        "`make chaos` (`python -m tests.chaos`): a StreamJob with an exactly-once FileSink on S3 under a seeded "
        "schedule of faults on the e2e test bed (see `tests/chaos/`). Each run ends by releasing all input and "
        "checking the committed output and every deployment's restore point.", "",
        f"Machine: {c.environment} at the start. Faults per run: {c.faults}; kinds: "
        f"{'all' if set(c.kinds) == set(KINDS) else ', '.join(c.kinds)}.", "",
        "| figure | value |", "| --- | --- |",
        f"| runs (failed) | {t['runs']} ({t['failed_runs']}) |",
        f"| faults scheduled / injected | {t['faults']} / {t['injected']} |",
        f"| records committed (all runs) | {t['rows']} |",
        f"| deployments observed | {t['deployments']} |",
        f"| lost | {t['lost']} |",
        f"| duplicated | {t['duplicated']} |",
        f"| keys with wrong state | {t['wrong_state_keys']} |",
        f"| unrequested empty states | {t['unrequested_empty']} |",
        f"| runs stuck (a step or the end not reached in time) | {t['stuck']} |",
        f"| wall time | {t['wall_s'] / 60:.1f} min |", "",
        "## Faults by kind", "",
        "Scheduled, and injected (the step reached its target: a kill found its pod running, an upgrade ran).", "",
        "| kind | scheduled | injected | fails until |", "| --- | --- | --- | --- |",
    ]  # fmt: skip
    for kind in KINDS:
        if kind in t["faults_by_kind"]:
            needs = DEPENDS_ON.get(kind, "").split(":")[0]
            lines.append(f"| {kind} | {t['faults_by_kind'][kind]} | {t['injected_by_kind'].get(kind, 0)} | {needs} |")
    lines += [
        "",
        "## Runs",
        "",
        "| seed | faults | result | lost | duplicated | empty | wall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in c.runs:
        v = r.verdict
        lines.append(
            f"| {r.seed} | {len(r.steps)} | {'ok' if r.ok else 'FAILED'} | {v.lost} | {v.duplicated} | "
            f"{len(v.unrequested_empty)} | {r.seconds:.0f} s |"
        )
    failing = [r for r in c.runs if not r.ok]
    if failing:
        lines += ["", "## Failing runs (replay with the command shown)"]
        for r in failing:
            lines += [
                "",
                f"`{r.replay(c.kinds)}`",
                "",
                "```",
                format_schedule(r.seed, r.steps),
                "```",
                "",
                *[f"- {p}" for p in r.verdict.problems],
            ]
    return "\n".join(lines) + "\n"


def keep_or_remove(root: Path, ok: bool, keep: bool, log: Log) -> None:
    """Removes the campaign's directory after a clean campaign (unless kept); says where it is otherwise."""
    if ok and not keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        log(f"chaos: logs and results kept in {root}")
