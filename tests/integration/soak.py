"""Seeded fault injection against a running exactly-once pipeline, and the soak mode's entry point.

The pipeline (``faultjobs/jobs.py``): a throttled generator -> key_by -> keyed reduce -> FileSink
on S3 (commits slowed by 150 ms to widen the window between checkpoint completion and commit),
checkpoints on S3. ``streamjob run`` runs it as a subprocess (the JobMaster in local mode) while a
driver injects faults at random moments, drawn from a seeded ``random.Random``:

- ``worker``: SIGKILL of a slot process;
- ``jobmaster``: SIGKILL of the ``streamjob run`` process, then ``streamjob run ... --restore latest``;
- ``in-flight``: a checkpoint is triggered and a slot is killed while it is in flight;
- ``before-commit``: a slot or the JobMaster is killed right after a checkpoint completed, before
  the sink's (slowed) commit;
- ``s3-restart``: the S3 server is restarted while a checkpoint is in flight.

After the round's faults the job runs to its end and the committed output is compared with the
failure-free expectation: identical in EXACTLY_ONCE, nothing missing in AT_LEAST_ONCE. Soak:
``python -m tests.integration.soak --faults 200 [--seed N] [--mode EXACTLY_ONCE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamjob.worker.protocol.auth import JOB_SECRET_ENV, derive_rest_token, new_job_secret
from tests.integration.faultjobs.jobs import compare, read_file_outputs
from tests.support.s3server import SeaweedServer

JOB_FILE = str(Path(__file__).with_name("faultjobs").joinpath("jobs.py").resolve()) + ":build"
SCENARIOS = ("worker", "jobmaster", "in-flight", "before-commit", "s3-restart")
_REST = re.compile(r"REST API (http://127\.0\.0\.1:\d+)")
_CHECKPOINT = re.compile(r"checkpoint (\d+) completed")


@dataclass
class RoundResult:
    """One job run under faults."""

    seed: int
    mode: str
    faults: list[str] = field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class JobProcess:
    """One ``streamjob run`` process: its REST address and the checkpoints it reported."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("a")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.rest: str | None = None
        self.token = derive_rest_token(env[JOB_SECRET_ENV])  # the run takes its secret from the environment
        self.completed: list[tuple[int, float]] = []
        self.finished = False
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.write(line)
            self.log.flush()
            with self.changed:
                self.lines.append(line.rstrip())
                if (m := _REST.search(line)) is not None:
                    self.rest = m.group(1)
                elif (m := _CHECKPOINT.search(line)) is not None:
                    self.completed.append((int(m.group(1)), time.monotonic()))
                elif "job FINISHED" in line:
                    self.finished = True
                self.changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Waits until ``predicate()`` holds or the process ended; returns whether it holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                if self.proc.poll() is not None and not self._reader.is_alive():
                    return bool(predicate())
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.2))
            return True

    def get(self, path: str) -> dict[str, Any]:
        """GET a REST path as JSON."""
        with urllib.request.urlopen(f"{self.rest}{path}", timeout=5) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def post(self, path: str) -> None:
        """POST to a REST path (errors ignored: the JobMaster may be busy recovering)."""
        try:
            req = urllib.request.Request(
                f"{self.rest}{path}",
                data=b"{}",
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
            urllib.request.urlopen(req, timeout=5).read()
        except OSError:
            pass

    def worker_pids(self) -> list[int]:
        """The slot processes of the running attempt."""
        try:
            job = self.get("/job")
        except OSError:
            return []
        pids = job.get("workers") or job.get("worker_pids") or []
        out = []
        for entry in pids:
            pid = entry.get("pid") if isinstance(entry, dict) else entry
            if isinstance(pid, int):
                out.append(pid)
        return out

    def kill_group(self) -> None:
        """Ends this run's process group (cleanup of processes the driver started)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


class FaultDriver:
    """Runs rounds of the pipeline under seeded faults against one S3 server."""

    def __init__(self, s3: SeaweedServer, work: Path, *, log: Any = None) -> None:
        self.s3 = s3
        self.work = work
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.s3.endpoint().env())
        env[JOB_SECRET_ENV] = new_job_secret()
        return env

    def run_round(
        self,
        seed: int,
        faults: int,
        mode: str = "EXACTLY_ONCE",
        rate: int = 1500,
        scenarios: tuple[str, ...] = SCENARIOS,
    ) -> RoundResult:
        """One job with up to ``faults`` faults; then the output check."""
        rng = random.Random(seed)
        result = RoundResult(seed, mode)
        started = time.monotonic()
        base = f"s3://{self.s3.endpoint().bucket}/faults-{seed}-{uuid.uuid4().hex[:6]}"
        output, checkpoints = f"{base}/output", f"{base}/chk"
        count = int(rate * (faults * 1.6 + 4))
        name = f"faults-{seed}"
        cmd = [
            sys.executable,
            "-m",
            "streamjob.worker.cli",
            "run",
            JOB_FILE,
            "source=gen",
            f"count={count}",
            f"rate={rate}",
            f"output={output}",
            "interval=300",
            f"mode={mode}",
            "slow_commit_ms=150",
            "parallelism=2",
            "--name",
            name,
            "--rest-port",
            "0",
            "--checkpoint-dir",
            checkpoints,
        ]
        log_path = self.work / f"{name}.log"
        env = self._env()
        # every scenario at least once per round (when the round has room), the rest drawn at random
        plan = list(scenarios[:faults]) + [rng.choice(scenarios) for _ in range(faults - len(scenarios))]
        rng.shuffle(plan)
        job = JobProcess(cmd, env, log_path)
        try:
            while plan:
                # every fault waits until the current attempt has completed a checkpoint
                job = self._wait_checkpoint(job, cmd, env, log_path, result)
                if job is None:
                    result.problem = f"no checkpoint completed in 120 s (log {log_path})"
                    return result
                if job.finished:
                    break
                scenario = plan.pop()
                time.sleep(rng.uniform(0.05, 0.8))
                job = self._inject(scenario, job, cmd, env, log_path, rng, result)
            deadline = time.monotonic() + 300
            while not job.finished and time.monotonic() < deadline:
                job.wait_for(lambda j=job: j.finished, deadline - time.monotonic())
                if not job.finished and job.proc.poll() is not None:
                    job = self._resume(job, cmd, env, log_path, result)
            if not job.finished:
                result.problem = f"the job did not finish (log {log_path})"
                return result
            job.proc.wait(60)
            problem = compare(read_file_outputs(output), count, exactly_once=mode == "EXACTLY_ONCE")
            result.problem = None if problem is None else f"{problem} (log {log_path})"
            return result
        finally:
            if job.proc.poll() is None:
                job.kill_group()
            result.seconds = time.monotonic() - started

    def _wait_checkpoint(
        self, job: JobProcess, cmd: list[str], env: dict[str, str], log_path: Path, result: RoundResult
    ) -> JobProcess | None:
        """Waits for the next completed checkpoint (or the end), resuming a JobMaster that exited."""
        deadline = time.monotonic() + 120
        done = len(job.completed)
        while time.monotonic() < deadline:
            if job.wait_for(lambda j=job, d=done: len(j.completed) > d or j.finished, deadline - time.monotonic()):
                return job
            if job.proc.poll() is not None:
                job = self._resume(job, cmd, env, log_path, result)
                done = 0
        return None

    def _resume(
        self, job: JobProcess, cmd: list[str], env: dict[str, str], log_path: Path, result: RoundResult
    ) -> JobProcess:
        """As the operator would: a JobMaster that gave up is started again from the latest checkpoint."""
        last = job.lines[-1] if job.lines else ""
        result.notes.append(f"the JobMaster exited ({job.proc.returncode}: {last[:160]}); resumed from latest")
        return JobProcess([*cmd, "--restore", "latest"], env, log_path)

    def _inject(
        self,
        scenario: str,
        job: JobProcess,
        cmd: list[str],
        env: dict[str, str],
        log_path: Path,
        rng: random.Random,
        result: RoundResult,
    ) -> JobProcess:
        if scenario == "worker":
            self._kill_worker(job, rng, result, scenario)
        elif scenario == "in-flight":
            job.post("/checkpoints")
            time.sleep(rng.uniform(0.0, 0.05))
            self._kill_worker(job, rng, result, scenario)
        elif scenario == "before-commit":
            done = len(job.completed)
            if job.wait_for(lambda: len(job.completed) > done, 30):
                if rng.random() < 0.5:
                    self._kill_worker(job, rng, result, scenario + "/worker")
                else:
                    return self._kill_jobmaster(job, cmd, env, log_path, result, scenario + "/jobmaster")
        elif scenario == "jobmaster":
            return self._kill_jobmaster(job, cmd, env, log_path, result, scenario)
        elif scenario == "s3-restart":
            job.post("/checkpoints")
            time.sleep(rng.uniform(0.0, 0.1))
            self.s3.restart()
            result.faults.append(scenario)
        return job

    def _kill_worker(self, job: JobProcess, rng: random.Random, result: RoundResult, label: str) -> None:
        pids = job.worker_pids()
        if pids:
            os.kill(rng.choice(pids), signal.SIGKILL)
            result.faults.append(label)

    def _kill_jobmaster(
        self, job: JobProcess, cmd: list[str], env: dict[str, str], log_path: Path, result: RoundResult, label: str
    ) -> JobProcess:
        slots = job.worker_pids()
        job.proc.send_signal(signal.SIGKILL)
        job.proc.wait(10)
        result.faults.append(label)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in slots) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [p for p in slots if _alive(p)]
        if survivors:
            result.notes.append(f"slot processes {survivors} outlived the JobMaster by 15 s")
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
        return JobProcess([*cmd, "--restore", "latest"], env, log_path)


def summarize(results: list[RoundResult]) -> str:
    """One line per round and the totals by scenario."""
    lines = []
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r.faults)
        status = "OK" if r.problem is None else f"FAILED: {r.problem}"
        lines.append(
            f"seed {r.seed} {r.mode}: {len(r.faults)} faults in {r.seconds:.0f} s — {status}"
            + (f" ({'; '.join(r.notes)})" if r.notes else "")
        )
    lines.append(f"total {sum(kinds.values())} faults: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.integration.soak --faults 200``: rounds of 10 faults until the total is reached."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", type=int, default=200, help="total faults to inject (default 200)")
    p.add_argument("--per-round", type=int, default=10, help="faults per job run (default 10)")
    p.add_argument("--seed", type=int, default=None, help="first round's seed (default: random, printed)")
    p.add_argument("--mode", choices=["EXACTLY_ONCE", "AT_LEAST_ONCE", "both"], default="both")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    print(f"soak: seed {seed}, {args.faults} faults, {args.per_round} per round", flush=True)
    work = Path(tempfile.mkdtemp(prefix="streamjob-soak-"))
    s3 = SeaweedServer(work / "s3")
    s3.start()
    os.environ.update(s3.endpoint().env())  # the output check reads the committed files
    results: list[RoundResult] = []
    try:
        driver = FaultDriver(s3, work)
        n = 0
        while sum(len(r.faults) for r in results) < args.faults:
            mode = args.mode if args.mode != "both" else ("EXACTLY_ONCE" if n % 3 != 2 else "AT_LEAST_ONCE")
            result = driver.run_round(seed + n, args.per_round, mode)
            results.append(result)
            print(summarize([result]).splitlines()[0], flush=True)
            n += 1
            if result.problem is not None:
                break
    finally:
        s3.stop()
    print(summarize(results), flush=True)
    failed = [r for r in results if r.problem is not None]
    if failed:
        print(
            f"soak FAILED; replay with: python -m tests.integration.soak --faults {args.per_round} "
            f"--seed {failed[0].seed} --mode {failed[0].mode}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
