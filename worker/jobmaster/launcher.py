"""How the JobMaster gets slot processes: started locally (MiniCluster) or by Kubernetes.

The local launcher starts one ``streamjob slot`` process per slot and, on a restart, starts a new
process for each one that exited (the survivors stay registered with the JobMaster, released from
the failed attempt); when the JobMaster gives up on its slots it kills them all (the MiniCluster's
resource manager). Local slots die with the JobMaster
process (``die_with_this_process``). The first attempt's slots may be started before the JobMaster
has a control port (``prestart``): forked from this process while it has a single thread
(``forked.py``; else spawned), they import their code while the JobMaster imports its own and
read the port's address from their standard input when ``start`` hands it over. With ``standby`` the
launcher runs that many slot processes more than the attempt needs (``streamjob run --standby-slots``):
they register as the JobMaster's idle spares, a failover deploys onto them at once, and the process
started for the lost slot becomes the next spare. On Kubernetes there is no launcher: worker pods
(standby ones too, ``spec.standbyWorkers``) connect on their own and the operator owns restarts.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from streamjob.worker.config import TlsSettings
from streamjob.worker.jobmaster.forked import can_fork, fork_slot
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, JOB_SECRET_FILE_ENV
from streamjob.worker.protocol.tls import INTERNAL_TLS_ENVS, internal_tls_env

#: What a prestarted slot runs when it is forked (``MODULE:FUNCTION``, imported in the child: a higher layer).
PRESTARTED_ENTRY = "streamjob.worker.slot_process:run_prestarted"


class SlotProcess(Protocol):
    """A slot's process: a ``subprocess.Popen`` (spawned) or a ``forked.ForkedProcess``."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class Launcher(Protocol):
    """Starts and stops the slot processes of one attempt."""

    standby: int
    """Slot processes it runs beyond the attempt's slots (idle spares)."""

    def start(self, slots: int, jobmaster: str, attempt: int) -> None: ...

    def replace_exited(self, jobmaster: str, attempt: int) -> int: ...

    def resize(self, slots: int, jobmaster: str, attempt: int) -> None: ...

    def stop_all(self, grace_s: float = 0.0) -> None: ...

    def pids(self) -> list[int]: ...

    def exited(self) -> list[tuple[int, int, Path]]: ...


def die_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties a child to this process (Linux): it is SIGKILLed when this one dies.

    ``PR_SET_PDEATHSIG`` is set in the child after ``fork`` and before ``exec`` (it survives
    ``exec``), so no slot lives without its JobMaster, not even while Python starts up; the child
    then compares its parent pid with ours, because a parent that died before the ``prctl`` sends no
    signal. (Set later, in the slot, a JobMaster SIGKILLed in the first second left slots retrying
    its port for 600 s, ready to register with a new JobMaster on that port.) The signal follows the
    thread that started the child: the launcher runs on the JobMaster's event loop thread, which
    lives as long as the process. Returns None where ``prctl`` does not exist.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def tie() -> None:
        prctl(set_pdeathsig, sigkill)
        if os.getppid() != parent:
            os._exit(1)  # the JobMaster died before the prctl: no signal will come

    return tie


class LocalProcessLauncher:
    """Runs slots as child processes; their stdout is the terminal's (print sinks), their logs go to ``log_dir``."""

    def __init__(
        self,
        log_dir: Path,
        *,
        secret: str,
        env: dict[str, str] | None = None,
        tls: TlsSettings | None = None,
        standby: int = 0,
        fork: bool = True,
    ) -> None:
        """``secret``: the job's secret, handed to the slots in their environment (never argv, which ``ps`` shows).

        ``tls``: the job's internal TLS files, handed over as ``STREAMJOB_INTERNAL_TLS_*`` (none: plain TCP).
        ``standby``: slot processes run beyond every ``slots`` asked for, idle as spares.
        ``fork``: prestarted slots may be forked (``forked.py``); False spawns every slot.
        """
        self.standby = standby
        self.fork = fork
        self.log_dir = log_dir
        self.tls = tls
        self.secret = secret
        self.env = env
        self.procs: list[SlotProcess] = []
        self.logs: list[Path] = []
        self.prestarted: tuple[int, list[SlotProcess]] | None = None
        """(attempt, processes) started by ``prestart`` that wait for the JobMaster's address."""

    def _env(self) -> dict[str, str]:
        """The slots' environment: this job's secret and internal TLS files, whatever was inherited."""
        env = dict(os.environ if self.env is None else self.env)
        env["STREAMJOB_DIE_WITH_PARENT"] = "1"
        env[JOB_SECRET_ENV] = self.secret
        env.pop(JOB_SECRET_FILE_ENV, None)
        for name in INTERNAL_TLS_ENVS:  # only this job's settings count, never an inherited variable
            env.pop(name, None)
        env.update(internal_tls_env(self.tls))
        return env

    def _log_path(self, index: int, attempt: int, append: bool) -> Path:
        path = self.log_dir / f"slot-{index}-attempt-{attempt}.log"
        if append:
            self.logs.append(path)
        else:
            self.logs[index] = path
        return path

    def _fork(self, index: int, attempt: int, env: dict[str, str], job: tuple[str, list[str]] | None) -> SlotProcess:
        """One prestarted slot forked from this process (``forked.fork_slot``); ``job``: see ``prestart``."""
        path = self._log_path(index, attempt, append=True)
        kwargs = {"job": job} if job is not None else None
        proc = fork_slot(PRESTARTED_ENTRY, path, env, tie=die_with_this_process(), kwargs=kwargs)
        self.procs.append(proc)
        return proc

    def _spawn(
        self, index: int, jobmaster: str, attempt: int, env: dict[str, str], *, append: bool = True
    ) -> SlotProcess:
        """One slot process; ``jobmaster`` ``-`` makes it read the address from its standard input (a pipe).

        ``append``: a new process index (else it replaces process ``index`` in ``procs`` and ``logs``).
        """
        path = self._log_path(index, attempt, append)
        cmd = [
            sys.executable,
            "-m",
            "streamjob.worker.cli",
            "slot",
            "--jobmaster",
            jobmaster,
            "--data-host",
            "127.0.0.1",
        ]
        stdin = subprocess.PIPE if jobmaster == "-" else None
        with path.open("ab") as log:
            proc: subprocess.Popen[bytes] = subprocess.Popen(
                cmd, stdin=stdin, stdout=None, stderr=log, env=env, preexec_fn=die_with_this_process()
            )
        if append:
            self.procs.append(proc)
        return proc

    def prestart(
        self, slots: int, attempt: int, *, fork: bool = True, job: tuple[str, list[str]] | None = None
    ) -> None:
        """Has ``slots`` slot processes of ``attempt`` waiting; ``start`` gives them the control port's address.

        Called before the JobMaster's event loop exists (``local.run_local``, and ``streamjob run``
        before it loads the job, with its guess of the slots): the slots' imports then overlap the
        JobMaster's instead of following them. While this process has one thread the slots are
        forked (they skip the interpreter's start and the modules already imported here), else spawned;
        ``fork=False`` spawns them (once the job's code ran here, a child would carry its module state).
        ``job``: the job's entrypoint and arguments, which a forked slot loads while it waits for its
        address (in step with this process loading the job), so that its deployment finds it loaded.
        Called again with the job's real number, it keeps the waiting processes that fit, stops the others and starts
        the missing ones. A slot that waits has only imported code: it reads nothing of the job
        before it has its address, and ends when the pipe closes without one (this process died or
        ``stop_all`` ran).
        """
        slots += self.standby
        waiting = self.prestarted[1] if self.prestarted is not None and self.prestarted[0] == attempt else []
        if len(waiting) > slots or (self.procs and not waiting):
            self.stop_all()
            waiting = []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self._env()
        fork = fork and self.fork and can_fork()
        for index in range(len(waiting), slots):
            waiting.append(self._fork(index, attempt, env, job) if fork else self._spawn(index, "-", attempt, env))
        self.prestarted = (attempt, waiting)

    def start(self, slots: int, jobmaster: str, attempt: int) -> None:
        """Starts ``slots`` slot processes that register at ``jobmaster`` (the control port's ``HOST:PORT``).

        Slots prestarted for this attempt get the address through their pipe; the rest start now.
        """
        slots += self.standby
        prestarted, self.prestarted = self.prestarted, None
        if prestarted is not None and (prestarted[0] != attempt or len(prestarted[1]) > slots):
            self.stop_all()  # started for another attempt or shape: none of them may register
            prestarted = None
        waiting = prestarted[1] if prestarted is not None else []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for proc in waiting:
            _hand_address(proc, jobmaster)
        env = self._env()
        for index in range(len(waiting), slots):
            self._spawn(index, jobmaster, attempt, env)

    def replace_exited(self, jobmaster: str, attempt: int) -> int:
        """Starts a new process for every slot process that exited (a failover); returns how many."""
        env: dict[str, str] | None = None
        replaced = 0
        for index, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            env = env or self._env()
            self.procs[index] = self._spawn(index, jobmaster, attempt, env, append=False)
            replaced += 1
        return replaced

    def resize(self, slots: int, jobmaster: str, attempt: int) -> None:
        """A rescale in place: forgets the slot processes that exited (let go), then runs ``slots`` of them.

        Surplus processes still running (one did not exit in time) are killed; missing ones start now.
        """
        slots += self.standby
        alive = [(proc, log) for proc, log in zip(self.procs, self.logs, strict=True) if proc.poll() is None]
        for proc, _ in alive[slots:]:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        alive = alive[:slots]
        self.procs, self.logs = [p for p, _ in alive], [log for _, log in alive]
        env = self._env() if len(alive) < slots else {}
        for index in range(len(alive), slots):
            self._spawn(index, jobmaster, attempt, env)

    def stop_all(self, grace_s: float = 0.0) -> None:
        """Waits up to ``grace_s`` for slots to exit on their own, then kills the rest and reaps them."""
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                try:
                    proc.wait(timeout=remaining)
                except subprocess.TimeoutExpired:
                    pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        self.procs = []
        self.logs = []
        self.prestarted = None

    def pids(self) -> list[int]:
        """Process ids of the running slots."""
        return [p.pid for p in self.procs if p.poll() is None]

    def exited(self) -> list[tuple[int, int, Path]]:
        """(index, exit code, log file) of the slot processes of this attempt that have ended."""
        return [
            (index, code, self.logs[index])
            for index, proc in enumerate(self.procs)
            if (code := proc.poll()) is not None
        ]


def _hand_address(proc: SlotProcess, jobmaster: str) -> None:
    """Writes the control port's address to a prestarted slot and closes its pipe (its end of input).

    A slot that already died (its interpreter or imports failed) has no reader: the JobMaster sees its
    exit code through ``exited`` as for any slot.
    """
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"{jobmaster}\n".encode())
        proc.stdin.close()
    except OSError:  # BrokenPipeError: the slot is gone
        pass
