"""Applies a schedule's steps to one StreamJob on the chaos bed and records what each step hit.

``ChaosJob`` is the StreamJob of ``tests/chaos/job.py`` (gate file, output epochs on S3, spec
patches, status waits); ``Executor.run`` raises the job's input gate before every step, waits for
the job to be running, waits the step's delay, injects the fault and waits until the job is back
(or the step's own end condition), then releases the rest of the input and waits for the job to
finish. It also keeps the lineages the schedule started empty on purpose (first deployment,
stateless upgrades) for the checker. A step that cannot reach its end condition in time stops the
run (the campaign reports it as failing with the seed and schedule). Used by ``campaign``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.bed import GROUP_PATH, ChaosBed, wait_for
from tests.chaos.schedule import START_PARALLELISM, STEP_ORDER, Step

NAME = "chaos"
IMAGE = "streamjob:e2e"
ENTRYPOINT = f"{Path(__file__).resolve().parent / 'job.py'}:build"
Json = dict[str, Any]
WAIT_S = 240.0  # the longest any step may take to settle on a loaded 2-core machine


@dataclass(frozen=True)
class Sizes:
    """How much input a run has and how fast it flows."""

    per_step: int = 600  # numbers per step: the input is `per_step * (steps + 1)` numbers
    feed_rate: float = 60.0  # numbers released per second while the steps run, so faults land on a busy job
    rate: int = 400  # records per second at most (whole source): a restarted job catches up quickly
    keys: int = 16
    interval_ms: int = 1000
    checkpoint_timeout_ms: int = 8000


@dataclass
class StepResult:
    """What happened when a step ran."""

    step: Step
    started: float
    seconds: float = 0.0
    hit: str = ""
    error: str | None = None

    def as_json(self) -> Json:
        return {
            "index": self.step.index,
            "kind": self.step.kind,
            "params": self.step.params,
            "delay_s": self.step.delay_s,
            "seconds": round(self.seconds, 1),
            "hit": self.hit,
            "error": self.error,
        }


def running(s: Json) -> bool:
    """Status Running (or RolledBack: running the last stable spec) with no operation in flight."""
    return s.get("lifecycleState") in ("Running", "RolledBack") and not s.get("operation")


class ChaosJob:
    """The campaign's StreamJob in its namespace: gate, output epochs, spec and status."""

    def __init__(self, bed: ChaosBed, namespace: str, run_dir: Path, count: int, sizes: Sizes) -> None:
        self.bed, self.namespace, self.run_dir, self.count, self.sizes = bed, namespace, run_dir, count, sizes
        self.gate_file = run_dir / "gate"
        self.path = f"{GROUP_PATH}/namespaces/{namespace}/streamjobs/{NAME}"
        self.prefix = f"chaos-{namespace}"
        self.epoch = 0
        self.tag = 0
        self.nonce = 0
        self.gate = 0
        self.set_gate(0)

    def set_gate(self, value: int) -> None:
        self.gate = min(value, self.count)
        tmp = self.gate_file.with_suffix(".tmp")
        tmp.write_text(str(self.gate))
        tmp.replace(self.gate_file)

    def feed(self, step: Callable[[], int], stop: threading.Event) -> None:
        """Raises the gate ``feed_rate`` numbers a second, at most two steps ahead of step ``step()``."""
        last = time.monotonic()
        carry = 0.0
        while not stop.wait(0.1):
            now = time.monotonic()
            carry += (now - last) * self.sizes.feed_rate
            last = now
            # Never the last number: the job must not finish before the last step is done.
            cap = min((step() + 2) * self.sizes.per_step, self.count - 1)
            if carry >= 1 and self.gate < cap:
                self.set_gate(min(cap, self.gate + int(carry)))
                carry -= int(carry)

    def out_uri(self, epoch: int) -> str:
        return f"s3://{self.bed.s3.endpoint().bucket}/{self.prefix}/out-e{epoch}"

    def args(self) -> list[str]:
        s = self.sizes
        return [
            self.out_uri(self.epoch),
            str(self.gate_file),
            str(self.count),
            str(s.rate),
            str(s.keys),
            str(s.interval_ms),
            f"v{self.tag}",
        ]

    def create(self) -> None:
        endpoint = self.bed.s3.endpoint()
        root = f"s3://{endpoint.bucket}/{self.prefix}"
        spec: Json = {
            "image": IMAGE, "entrypoint": ENTRYPOINT, "args": self.args(), "parallelism": START_PARALLELISM,
            "upgradeMode": "savepoint",
            "storage": {"checkpointsUri": f"{root}/checkpoints", "savepointsUri": f"{root}/savepoints",
                        "s3": {"endpoint": endpoint.endpoint_url, "region": endpoint.region, "pathStyle": True,
                               "credentialsSecret": {"name": "s3-credentials"}}},
            "checkpoint": {"timeoutMs": self.sizes.checkpoint_timeout_ms, "tolerableFailures": 0, "retained": 3},
            "restartPolicy": {"strategy": "fixed", "maxRestarts": 100000, "backoff": {"initialDelaySeconds": 0.5}},
            "timeouts": {"savepointSeconds": 60, "upgradeSeconds": 180},
        }  # fmt: skip
        manifest = {
            "apiVersion": "streamjob.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": NAME},
            "spec": spec,
        }
        self.bed.api.create(f"{GROUP_PATH}/namespaces/{self.namespace}/streamjobs", manifest)

    def status(self) -> Json:
        return dict(self.bed.api.get(self.path).get("status") or {})

    def patch(self, spec: Json) -> int:
        """Merge-patches the spec; returns the new generation."""
        result = self.bed.api.merge_patch(self.path, {"spec": spec})
        return int(result["metadata"]["generation"])

    def wait(self, check: Callable[[Json], bool], what: str, timeout: float = WAIT_S, interval: float = 0.1) -> Json:
        def ready() -> Json | None:
            current = self.status()
            return current if current and check(current) else None

        try:
            result: Json = wait_for(ready, timeout, what, interval)
        except TimeoutError as err:
            shown = {k: v for k, v in self.status().items() if k not in ("lastReconciledSpec", "lastStableSpec")}
            raise TimeoutError(f"{err}; status {json.dumps(shown)[:1500]}") from None
        return result

    def pod(self, role: str, attempt: int, index: int = 0) -> str:
        return f"{NAME}-jobmaster-{attempt}" if role == "jobmaster" else f"{NAME}-worker-{attempt}-{index}"


class Executor:
    """Runs the steps of one schedule against a ``ChaosJob``."""

    def __init__(self, bed: ChaosBed, job: ChaosJob, log: Callable[[str], None]) -> None:
        self.bed, self.job, self.log = bed, job, log
        self.empty_lineages: set[str] = set()
        self.results: list[StepResult] = []
        self.failure: str | None = None

    # -- the run ---------------------------------------------------------------------------------

    def run(self, steps: list[Step], finish_timeout: float = 420.0) -> bool:
        """Applies every step, then lets the job finish; False (and ``failure``) when it got stuck."""
        job = self.job
        job.set_gate(job.sizes.per_step // 4)
        job.create()
        current = [0]
        stop = threading.Event()
        feeder = threading.Thread(target=job.feed, args=(lambda: current[0], stop), daemon=True, name="chaos-gate")
        try:
            first = job.wait(lambda s: running(s) and bool(s.get("jobId")), "the first deployment to run")
            self.empty_lineages.add(first["jobId"])
            feeder.start()
            for number, step in enumerate(steps):
                current[0] = number
                result = StepResult(step, time.time())
                self.results.append(result)
                self.log(f"  step {step.describe()}")
                try:
                    job.wait(running, "the job to run before the step")
                    time.sleep(step.delay_s)
                    result.hit = getattr(self, "_" + step.kind.replace("-", "_"))(step) or ""
                except TimeoutError as err:
                    result.error = str(err)
                    self.failure = f"step {step.describe()}: {err}"
                    return False
                finally:
                    result.seconds = time.time() - result.started
                    if not self.bed.operator.alive:
                        self.bed.operator.start()
                    self.bed.thaw_s3()
                    if self.bed.s3.proc is None or self.bed.s3.proc.poll() is not None:
                        self.bed.s3.start()
            stop.set()
            job.set_gate(job.count)
            job.wait(lambda s: s.get("lifecycleState") == "Finished", "the job to finish", finish_timeout)
            return True
        except TimeoutError as err:
            self.failure = self.failure or str(err)
            return False
        finally:
            stop.set()

    # -- helpers ---------------------------------------------------------------------------------

    def _worker(self, status: Json, index: int) -> str:
        """Worker ``index`` of the running attempt: a crashed one's replacement (``-r<n>``) once it has one."""
        attempt = int(status["attempt"])
        selector = f"streamjob.dev/job={NAME},app.kubernetes.io/component=worker,streamjob.dev/attempt={attempt}"
        items = self.bed.api.get(f"/api/v1/namespaces/{self.job.namespace}/pods", labelSelector=selector)["items"]
        names = sorted(p["metadata"]["name"] for p in items if (p.get("status") or {}).get("phase") == "Running")
        if names:
            return names[index % len(names)]
        workers = int(status.get("parallelism") or START_PARALLELISM)
        return self.job.pod("worker", attempt, index % workers)

    def _crash(self, pod: str, sig: int = signal.SIGKILL) -> str:
        try:
            self.bed.agent.crash(self.job.namespace, pod, sig=sig)
        except (KeyError, RuntimeError) as err:
            return f"missed {pod}: {err}"
        return f"signal {signal.Signals(sig).name} to {pod}"

    def _kill(self, role: str, index: int = 0, sig: int = signal.SIGKILL) -> tuple[str, Json]:
        """Signals a pod of the running attempt; the status just before. Retries a pod that ended meanwhile."""
        hit = ""
        for _ in range(3):
            before = self.job.wait(running, "the job to run before the kill")
            pod = self._worker(before, index) if role == "worker" else self.job.pod("jobmaster", int(before["attempt"]))
            hit = self._crash(pod, sig)
            if not hit.startswith("missed"):
                return hit, before
            time.sleep(1.0)
        return hit, self.job.status()

    def _settled(self, before: Json, what: str) -> str:
        """Waits until the job restarted or completed a checkpoint since ``before`` (a fault it survived)."""
        old = int(before.get("attempt") or 0)
        base = int((before.get("lastCheckpoint") or {}).get("id") or 0)

        def settled(s: Json) -> bool:
            last = s.get("lastCheckpoint") or {}
            newer = last.get("jobId") == s.get("jobId") == before.get("jobId") and int(last.get("id") or 0) > base
            return running(s) and (int(s.get("attempt") or 0) > old or newer)

        after = self.job.wait(settled, f"the job to run (restarted or checkpointing) after {what}")
        return "restarted" if int(after.get("attempt") or 0) > old else "survived"

    def _after_worker_crash(self, before: Json) -> None:
        """A crashed worker is recovered in place (replacement pod, same attempt) or, failing that, by a restart.

        In place: two checkpoints newer than the last one before the crash (the first may be one the
        failed tasks had acknowledged) show the redeployed tasks running.
        """
        old = int(before["attempt"])
        base = int((before.get("lastCheckpoint") or {}).get("id") or 0)

        def recovered(s: Json) -> bool:
            last = s.get("lastCheckpoint") or {}
            newer = last.get("jobId") == s.get("jobId") == before.get("jobId") and int(last.get("id") or 0) >= base + 2
            return running(s) and (int(s.get("attempt") or 0) > old or newer)

        self.job.wait(recovered, "the job to run again after the worker crash")

    def _after_restart(self, before: Json) -> None:
        old = int(before["attempt"])
        self.job.wait(lambda s: running(s) and int(s.get("attempt") or 0) > old, "the job to run again after the fault")

    def _upgraded(self, generation: int, expected: Json, allow_rollback: bool = True) -> Json:
        """Waits until the operator acted on the patch (``expected`` spec fields) and the job runs it.

        A rollback counts as done only once the operator reconciled this spec: an earlier rollback's
        error stays in status, and a spec patched while that rollback ran is acted on after it.
        """

        def done(s: Json) -> bool:
            dep = s.get("deployment") or {}
            reconciled = s.get("lastReconciledSpec") or {}
            if not running(s) or any(reconciled.get(k) != v for k, v in expected.items()):
                return False
            at_generation = int(dep.get("generation") or 0) >= generation
            return at_generation or (allow_rollback and "rolling back" in (s.get("error") or ""))

        return self.job.wait(done, f"the job to run generation {generation}")

    def _operator_down(self, seconds: float) -> None:
        self.bed.operator.kill()
        time.sleep(seconds)
        self.bed.operator.start()

    def _new_tag(self, **spec: Any) -> tuple[int, Json]:
        """Patches a new tag (an upgrade); the generation and the spec fields that show it was reconciled."""
        self.job.tag += 1
        args = self.job.args()
        return self.job.patch({"args": args, **spec}), {"args": args}

    # -- the fault kinds (one method per kind; each returns what it hit) --------------------------

    def _kill_worker(self, step: Step) -> str:
        hit, before = self._kill("worker", step.params["worker"])
        if not hit.startswith("missed"):
            self._after_worker_crash(before)
        return hit

    def _kill_jobmaster(self, step: Step) -> str:
        hit, before = self._kill("jobmaster")
        if not hit.startswith("missed"):
            self._after_restart(before)
        return hit

    def _kill_operator(self, step: Step) -> str:
        before = self.job.status()
        self.bed.operator.kill()
        victim = step.params["while_down"]
        hit = "operator killed while the job ran"
        if victim != "nothing":  # the restarted operator must find the failed attempt from what it observes
            time.sleep(min(1.0, step.params["down_s"]))
            role = "jobmaster" if victim == "kill-jobmaster" else "worker"
            pod = (
                self.job.pod("jobmaster", int(before["attempt"]))
                if role == "jobmaster"
                else self._worker(before, step.params["worker"])
            )
            hit += f", then {self._crash(pod)} while it was down"
        time.sleep(step.params["down_s"])
        self.bed.operator.start()
        if victim == "kill-worker" and "missed" not in hit:
            self._after_worker_crash(before)
        elif victim != "nothing" and "missed" not in hit:
            self._after_restart(before)
        self.job.wait(running, "the job to run after the operator restart")
        return hit

    def _kill_operator_upgrade(self, step: Step) -> str:
        at = step.params["at"]
        generation, expected = self._new_tag(upgradeMode=step.params["mode"])

        def reached(s: Json) -> bool:
            op = s.get("operation") or {}
            dep = s.get("deployment") or {}
            if op.get("kind") == "upgrade" and op.get("step") in STEP_ORDER:
                return STEP_ORDER.index(op["step"]) >= STEP_ORDER.index(at)
            return not op and int(dep.get("generation") or 0) >= generation

        status = self.job.wait(reached, f"the upgrade to reach step {at}", interval=0.02)
        op = status.get("operation") or {}
        self._operator_down(step.params["down_s"])
        self._upgraded(generation, expected)
        return f"operator killed at upgrade step {op.get('step') or 'done (too late)'}"

    def _kill_operator_savepoint(self, step: Step) -> str:
        self.job.nonce += 1
        nonce = self.job.nonce
        self.job.patch({"savepointTriggerNonce": nonce})

        def requested(s: Json) -> bool:
            req = s.get("snapshotRequest") or {}
            return req.get("nonce") == nonce or (s.get("nonces") or {}).get("savepoint") == nonce

        status = self.job.wait(requested, "the savepoint request", interval=0.02)
        req = status.get("snapshotRequest") or {}
        self._operator_down(step.params["down_s"])
        self.job.wait(lambda s: (s.get("nonces") or {}).get("savepoint") == nonce and running(s), "the savepoint")
        where = "with its request id" if req.get("requestId") else "before its request id" if req else "after it"
        return f"operator killed {where}"

    def _stop_worker(self, step: Step) -> str:
        hit, before = self._kill("worker", step.params["worker"], signal.SIGSTOP)
        if hit.startswith("missed"):
            return hit
        time.sleep(step.params["stop_s"])
        self._crash(self._worker(before, step.params["worker"]), signal.SIGCONT)
        return f"{hit} → {self._settled(before, 'the stopped worker')}"

    def _s3_outage(self, step: Step) -> str:
        before = self.job.status()
        self.bed.s3.stop()
        time.sleep(step.params["down_s"])
        self.bed.s3.start()
        return f"S3 stopped and started → {self._settled(before, 'the S3 outage')}"

    def _s3_freeze(self, step: Step) -> str:
        before = self.job.status()
        self.bed.freeze_s3()
        time.sleep(step.params["down_s"])
        self.bed.thaw_s3()
        return f"S3 frozen and thawed → {self._settled(before, 'the S3 freeze')}"

    def _upgrade_savepoint(self, step: Step) -> str:
        self._upgraded(*self._new_tag(upgradeMode="savepoint"))
        return "upgraded (savepoint)"

    def _upgrade_last_state(self, step: Step) -> str:
        self._upgraded(*self._new_tag(upgradeMode="last-state"))
        return "upgraded (last-state)"

    def _upgrade_stateless(self, step: Step) -> str:
        # The next epoch writes to its own output directory; no rollback may bring the new lineage's
        # state into the old epoch's spec, so rollbacks are off until the new lineage is stable.
        self.job.epoch += 1
        generation, expected = self._new_tag(upgradeMode="stateless", rollbackOnFailure=False)
        status = self._upgraded(generation, expected, allow_rollback=False)
        self.empty_lineages.add(status["jobId"])

        def stable(s: Json) -> bool:
            dep = s.get("deployment") or {}
            return bool(dep.get("stable")) and int(dep.get("generation") or 0) >= generation

        self.job.wait(stable, "the stateless lineage to be stable")
        self.job.patch({"upgradeMode": "savepoint", "rollbackOnFailure": True})
        return f"upgraded (stateless) to epoch {self.job.epoch}, job {status['jobId']}"

    def _snapshot_nonce(self, step: Step, kind: str) -> str:
        self.job.nonce += 1
        nonce = self.job.nonce
        field_name = "savepointTriggerNonce" if kind == "savepoint" else "checkpointTriggerNonce"
        before = self.job.wait(running, "the job to run before the nonce")
        jm_log = self._jobmaster_log(int(before["attempt"]))
        line = "completed savepoint "
        done_before = jm_log.read_text(errors="replace").count(line) if jm_log else 0
        self.job.patch({field_name: nonce})

        def handled() -> bool:
            return (self.job.status().get("nonces") or {}).get(kind) == nonce

        if step.params["then_kill"] and kind == "savepoint" and jm_log is not None:
            # Kill on the JobMaster's own line, before the next checkpoint: that is when a savepoint's
            # side effects (committed output) and the checkpoint a restart restores disagree.
            deadline = time.monotonic() + WAIT_S
            while jm_log.read_text(errors="replace").count(line) <= done_before and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            wait_for(handled, WAIT_S, f"the {kind} (nonce {nonce})", 0.02)
        if not step.params["then_kill"]:
            return f"{kind} taken"
        hit = self._crash(self._worker(before, step.params["worker"]))
        if not hit.startswith("missed"):
            self._after_worker_crash(before)
        self.job.wait(lambda s: (s.get("nonces") or {}).get(kind) == nonce and running(s), f"the {kind} nonce")
        return f"{kind} taken, then {hit}"

    def _savepoint_nonce(self, step: Step) -> str:
        return self._snapshot_nonce(step, "savepoint")

    def _checkpoint_nonce(self, step: Step) -> str:
        return self._snapshot_nonce(step, "checkpoint")

    def _suspend_resume(self, step: Step) -> str:
        self.job.patch({"state": "suspended", "upgradeMode": step.params["mode"]})
        status = self.job.wait(lambda s: s.get("lifecycleState") == "Suspended", "the suspension")
        time.sleep(step.params["pause_s"])
        self.job.patch({"state": "running"})
        self.job.wait(
            lambda s: running(s) and int(s.get("attempt") or 0) > int(status.get("attempt") or 0), "the job to resume"
        )
        return f"suspended ({step.params['mode']}) with restoreFrom {status.get('restoreFrom')}"

    def _fail_restart(self, step: Step) -> str:
        self.job.patch({"restartPolicy": {"maxRestarts": 0}})
        hit, before = self._kill("worker", step.params["worker"])
        try:
            if hit.startswith("missed"):
                return hit
            self.job.wait(lambda s: s.get("lifecycleState") == "Failed", "the job to fail (maxRestarts 0)")
            time.sleep(step.params["pause_s"])
        finally:
            self.job.nonce += 1
            self.job.patch({"restartNonce": self.job.nonce, "restartPolicy": {"maxRestarts": 100000}})
        self._after_restart(before)
        return f"{hit} → Failed → restartNonce {self.job.nonce}"

    def _rescale(self, step: Step) -> str:
        target = step.params["parallelism"]
        generation = self.job.patch({"parallelism": target, "upgradeMode": step.params["mode"]})
        status = self._upgraded(generation, {"parallelism": target})
        return f"rescaled to {status.get('parallelism')} ({step.params['mode']})"

    def _jobmaster_log(self, attempt: int) -> Path | None:
        try:
            return self.bed.agent.log_path(self.job.namespace, self.job.pod("jobmaster", attempt))
        except KeyError:
            return None


def environment_note() -> str:
    """Load average and CPU count, for the report."""
    load = os.getloadavg()
    return f"load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} on {os.cpu_count()} CPUs"
