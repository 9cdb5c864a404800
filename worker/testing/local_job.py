"""The test kit's out-of-process half: run a job as real processes, crash it, resume it, check its output.

Used by streamjob's own integration tests and by job authors' tests (through the re-exports of
``streamjob.worker.testing``; the in-process half is ``in_process.py``). ``LocalJob`` starts
``streamjob run`` as a child process (its own process group) with ``--rest-port 0``, finds the REST
address and the REST token's file in the progress lines (the token goes with every mutating call),
and offers the moves a recovery test needs::

    with LocalJob("jobs/my_job.py", "out=" + out_uri, parallelism=2, checkpoint_dir=ckpt) as job:
        job.wait_for_checkpoints(2)
        job.kill_worker(1)                      # SIGKILL one slot process
        assert job.wait() == 0
    assert sorted(read_committed(out_uri)) == expected

``read_committed`` reads what a ``FileSink`` committed (``file://`` or ``s3://``); ``FaultInjector``
picks the moment and the victim of a kill from a seed, which it prints so that a failure replays.
Every wait polls the REST API or the process with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from streamjob.worker.protocol.rest import (
    CheckpointsOverview,
    JobOverview,
    JobState,
    SavepointStatus,
    SavepointTriggered,
    SavepointView,
)

__all__ = [
    "SEED_ENV",
    "CliResult",
    "FaultInjector",
    "FaultPlan",
    "JobError",
    "LocalJob",
    "read_committed",
    "read_committed_files",
    "run_cli",
]

_REST_LINE = re.compile(r"REST API (https?://[0-9.]+:\d+)")
_TOKEN_LINE = re.compile(r"REST token in (\S+) \(")
_SAVEPOINT_LINE = re.compile(r"savepoint (\d+) completed .* — (\S+)/_metadata$")
SEED_ENV = "STREAMJOB_FAULT_SEED"


class JobError(AssertionError):
    """A job did not do what the test waited for; the message carries the job's recent output."""


@dataclass(frozen=True)
class CliResult:
    """A finished ``streamjob`` command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The ``error: ...`` lines printed on stderr."""
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "streamjob.worker.cli", *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 120.0
) -> CliResult:
    """Runs one ``streamjob`` command to its end and returns its exit code and output."""
    merged = dict(os.environ if env is None else env)
    proc = subprocess.run(
        _command(args), capture_output=True, text=True, env=merged, cwd=cwd, timeout=timeout, check=False
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


class LocalJob:
    """``streamjob run ENTRYPOINT ARGS`` as a child process, driven through its REST API."""

    def __init__(
        self,
        entrypoint: str,
        *args: str,
        parallelism: int | None = None,
        checkpoint_dir: str | None = None,
        savepoint_dir: str | None = None,
        checkpoint_interval: str | None = None,
        restore: str | None = None,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        rest_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``options`` are extra ``streamjob run`` flags (e.g. ``["--mode", "AT_LEAST_ONCE"]``).

        ``rest_tls``: the client context for a job run with ``--rest-tls-*`` (its REST API is https).
        """
        self.rest_tls = rest_tls
        flags = ["--rest-port", "0"]
        for flag, value in (
            ("--parallelism", parallelism),
            ("--checkpoint-dir", checkpoint_dir),
            ("--savepoint-dir", savepoint_dir),
            ("--checkpoint-interval", checkpoint_interval),
            ("--restore", restore),
        ):
            if value is not None:
                flags += [flag, str(value)]
        self.argv = _command(["run", *flags, *options, entrypoint, *args])
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.stdout_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._rest_url: str | None = None
        self._rest_token: str | None = None

    # -- process ----------------------------------------------------------------------------------
    def start(self) -> LocalJob:
        """Starts the job (idempotent)."""
        if self.proc is None:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                bufsize=1,
            )
            assert self.proc.stdout is not None and self.proc.stderr is not None
            for stream, sink in ((self.proc.stderr, self.lines), (self.proc.stdout, self.stdout_lines)):
                reader = threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
                reader.start()
                self._readers.append(reader)
        return self

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> LocalJob:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def _require(self) -> subprocess.Popen[str]:
        if self.proc is None:
            raise JobError("the job was not started")
        return self.proc

    @property
    def pid(self) -> int:
        """The job process's id: the JobMaster's (local mode runs it in this process)."""
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended."""
        return self._require().poll()

    def wait(self, timeout: float = 120.0) -> int:
        """Waits for the job process to exit; returns its exit code."""
        proc = self._require()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired as err:
            raise JobError(f"the job did not exit within {timeout:.0f} s\n{self.describe()}") from err
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILLs the job's process group (the JobMaster and its slots) if it is still running."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        else:
            self._remove_token_file()
            # slots are in the same group; they exit by themselves when the JobMaster is gone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _remove_token_file(self) -> None:
        """A killed run cannot remove its per-run token file; the kit does (a file chosen by flag stays)."""
        with self._changed:
            found = next((m for line in self.lines if (m := _TOKEN_LINE.search(line))), None)
        if found is not None and "--rest-token-file" not in self.argv:
            Path(found.group(1)).unlink(missing_ok=True)

    def interrupt(self) -> None:
        """Ctrl-C: the job is cancelled and keeps its checkpoints."""
        os.kill(self._require().pid, signal.SIGINT)

    # -- output -----------------------------------------------------------------------------------
    def output(self) -> str:
        """Every stderr line so far (progress and errors)."""
        with self._changed:
            return "\n".join(self.lines)

    def describe(self, tail: int = 40) -> str:
        """The command and the last lines of its output, for failure messages."""
        with self._changed:
            recent = self.lines[-tail:]
        return "command: " + " ".join(self.argv) + "\n" + "\n".join(recent)

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (waits for it)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if (
                    self.proc is not None
                    and self.proc.poll() is not None
                    and not any(t.is_alive() for t in self._readers)
                ):
                    raise JobError(
                        f"the job exited ({self.proc.returncode}) before printing {regex.pattern!r}\n{self.describe()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobError(f"no line matching {regex.pattern!r} within {timeout:.0f} s\n{self.describe()}")
                self._changed.wait(min(left, 0.5))

    # -- REST -----------------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` of the job's JobMaster (waits for the progress line)."""
        if self._rest_url is None:
            self._rest_url = self.wait_for_line(_REST_LINE, timeout=90.0).group(1)
        return self._rest_url

    @property
    def rest_token_file(self) -> Path:
        """The file ``streamjob run`` wrote its REST token to (waits for the progress line)."""
        return Path(self.wait_for_line(_TOKEN_LINE, timeout=90.0).group(1))

    @property
    def rest_token(self) -> str:
        """The job's REST token, the bearer token of mutating calls."""
        if self._rest_token is None:
            self._rest_token = self.rest_token_file.read_text(encoding="utf-8").strip()
        return self._rest_token

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One REST call; returns the decoded JSON body (4xx/5xx raise ``JobError`` with the error).

        Calls other than GET carry the job's REST token.
        """
        data = json.dumps(dict(body)).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if method.upper() != "GET":
            headers["Authorization"] = f"Bearer {self.rest_token}"
        req = urllib.request.Request(self.rest_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.rest_tls) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            raise JobError(f"{method} {path} -> {err.code}: {err.read().decode(errors='replace')}") from err
        except OSError as err:
            state = "exited" if self._require().poll() is not None else "is running"
            raise JobError(f"{method} {path} failed ({err}); the job {state}\n{self.describe()}") from err

    def get(self, path: str) -> Any:
        """``GET path``."""
        return self.request("GET", path)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """``POST path`` with a JSON body."""
        return self.request("POST", path, body if body is not None else {})

    def job(self) -> dict[str, Any]:
        """``GET /job``."""
        result: dict[str, Any] = self.get("/job")
        return result

    def checkpoints(self) -> dict[str, Any]:
        """``GET /checkpoints``."""
        result: dict[str, Any] = self.get("/checkpoints")
        return result

    def overview(self) -> JobOverview:
        """``GET /job`` read through the REST contract (``protocol/rest.py``)."""
        return JobOverview.model_validate(self.get("/job"))

    def checkpoint_overview(self) -> CheckpointsOverview:
        """``GET /checkpoints`` read through the REST contract."""
        return CheckpointsOverview.model_validate(self.get("/checkpoints"))

    def poll(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
        """Calls ``probe`` until it returns a truthy value; ``JobError`` naming ``what`` on timeout or exit."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = probe()
            except (OSError, JobError) as err:
                value, last_error = None, err
            if value:
                return value
            if self._require().poll() is not None:
                raise JobError(f"the job exited ({self.returncode}) while waiting for {what}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise JobError(
                    f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})\n{self.describe()}"
                )
            time.sleep(interval)

    def wait_for_checkpoints(self, count: int, timeout: float = 60.0) -> dict[str, Any]:
        """Waits until ``count`` checkpoints completed in this run; returns ``GET /checkpoints``."""

        def probe() -> dict[str, Any] | None:
            stats = self.checkpoints()
            return stats if CheckpointsOverview.model_validate(stats).counts.completed >= count else None

        result: dict[str, Any] = self.poll(f"{count} completed checkpoints", probe, timeout)
        return result

    def wait_for_running(self, *, restarts: int = 0, timeout: float = 60.0) -> dict[str, Any]:
        """Waits until the job is RUNNING after at least ``restarts`` restarts; returns ``GET /job``."""

        def probe() -> dict[str, Any] | None:
            info = self.job()
            job = JobOverview.model_validate(info)
            return info if job.state is JobState.RUNNING and job.restarts >= restarts else None

        result: dict[str, Any] = self.poll(f"state RUNNING after {restarts} restarts", probe, timeout)
        return result

    def worker_pids(self) -> list[int]:
        """Pids of the slot processes, by slot index (from ``GET /job``)."""
        workers = sorted(self.job()["workers"], key=lambda w: int(w["slot"]))
        return [int(w["pid"]) for w in workers]

    def kill_worker(self, index: int) -> int:
        """SIGKILLs the slot process ``index``; returns its pid."""
        pids = self.worker_pids()
        if not 0 <= index < len(pids):
            raise JobError(f"no worker slot {index}: the job has {len(pids)}")
        os.kill(pids[index], signal.SIGKILL)
        return pids[index]

    def trigger_savepoint(self, *, stop: bool = False, target: str | None = None, timeout: float = 60.0) -> str:
        """Takes a savepoint (``stop``: stop-with-savepoint); returns its directory URI."""
        body: dict[str, Any] = {"stop": stop}
        if target is not None:
            body["target"] = target
        started = SavepointTriggered.model_validate(self.post("/savepoints", body))
        request_id, checkpoint_id = started.request_id, started.checkpoint_id

        def probe() -> str | None:
            try:
                status = SavepointView.model_validate(self.get(f"/savepoints/{request_id}"))
            except JobError:
                status = None  # stop-with-savepoint: the JobMaster may be gone already
            if status is None or status.status is SavepointStatus.IN_PROGRESS:
                return self._savepoint_from_output(checkpoint_id)
            if status.status is SavepointStatus.FAILED:
                raise JobError(f"savepoint {request_id} failed: {status.reason}\n{self.describe()}")
            return str(status.location)

        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if self._require().poll() is not None:
                found = self._savepoint_from_output(checkpoint_id)
                if found:
                    return found
                raise JobError(
                    f"the job exited ({self.returncode}) before savepoint {checkpoint_id} completed\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise JobError(f"savepoint {checkpoint_id} did not complete within {timeout:.0f} s\n{self.describe()}")
            time.sleep(0.05)

    def _savepoint_from_output(self, checkpoint_id: int | None) -> str | None:
        if checkpoint_id is None:  # the savepoint was still waiting for a checkpoint in progress
            return None
        with self._changed:
            for line in self.lines:
                match = _SAVEPOINT_LINE.search(line)
                if match and int(match.group(1)) == checkpoint_id:
                    return match.group(2)
        return None

    def cancel(self) -> None:
        """``POST /cancel``."""
        self.post("/cancel")


# -- reading committed output -----------------------------------------------------------------------


def read_committed_files(uri: str) -> dict[str, bytes]:
    """The committed part files under a ``FileSink`` URI, by name (in-progress parts are never listed)."""
    from streamjob.worker.storage.stores import open_store

    store = open_store(uri)
    return {info.key: store.get(info.key) for info in store.list("") if info.key.rsplit("/", 1)[-1].startswith("part-")}


def read_committed(uri: str) -> list[Any]:
    """Every record a JSON-lines ``FileSink`` committed under ``uri`` (tuples come back as lists)."""
    records: list[Any] = []
    for _, data in sorted(read_committed_files(uri).items()):
        records.extend(json.loads(line) for line in data.decode().splitlines() if line)
    return records


# -- seeded fault injection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """When and whom to kill: after ``after_checkpoint`` completed checkpoints, wait ``delay_s``, kill ``worker``."""

    seed: int
    after_checkpoint: int
    worker: int
    delay_s: float


class FaultInjector:
    """Draws a ``FaultPlan`` from a seed (``$STREAMJOB_FAULT_SEED`` replays one) and carries it out."""

    def __init__(
        self,
        seed: int | None = None,
        *,
        checkpoints: tuple[int, int] = (1, 3),
        workers: int = 2,
        max_delay_s: float = 0.3,
    ) -> None:
        env_seed = os.environ.get(SEED_ENV)
        if seed is None:
            seed = int(env_seed) if env_seed else random.SystemRandom().randrange(2**31)
        rng = random.Random(seed)
        self.plan = FaultPlan(
            seed, rng.randint(*checkpoints), rng.randrange(workers), round(rng.uniform(0.0, max_delay_s), 3)
        )

    def __str__(self) -> str:
        p = self.plan
        return (
            f"fault seed {p.seed}: kill worker {p.worker} {p.delay_s} s after checkpoint {p.after_checkpoint} "
            f"(replay with {SEED_ENV}={p.seed})"
        )

    def inject(self, job: LocalJob, *, min_records: int = 0, timeout: float = 60.0) -> int:
        """Carries the plan out on ``job`` (once its sources read ``min_records``); returns the killed pid."""
        job.wait_for_checkpoints(self.plan.after_checkpoint, timeout)
        if min_records:
            job.poll(f"{min_records} records read", lambda: job.job()["records_in"] >= min_records, timeout)
        time.sleep(self.plan.delay_s)  # the drawn moment of the fault, not a wait for a condition
        return job.kill_worker(self.plan.worker)
