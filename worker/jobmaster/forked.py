"""Slot processes forked from ``streamjob run`` before it has a thread or an event loop (Linux).

A spawned slot pays for a new interpreter and imports everything again (~0.3 s before it can
register); a forked one shares the modules its parent already imported and starts importing the
rest at once, while the parent loads the job and the JobMaster. Used by
``LocalProcessLauncher.prestart`` only while the process has a single thread and no running event
loop (``can_fork``): forking a threaded process may copy a lock some other thread held. Every later
slot (restarts, rescales) is spawned as before.

The child is set up as a spawned slot would be: SIGKILLed when its parent dies (``tie``), its
standard error in its own log file, its standard input the pipe the control port's address comes
through, the environment ``LocalProcessLauncher`` gives spawned slots (the job's secret travels in
it, never in argv), then ``entry`` (``MODULE:FUNCTION``, imported in the child) runs and its return
value is the exit code (its keyword arguments are plain values the parent hands over in memory: the
job's entrypoint and arguments, which the slot loads while it waits). ``ForkedProcess`` is the
parent's handle, shaped like ``subprocess.Popen``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import select
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def can_fork() -> bool:
    """Whether forking a slot is safe here: Linux, one thread, no running event loop.

    The threads are counted by the kernel (``/proc/self/task``): a job's native library (a Kafka
    client, say) may have started threads that ``threading`` does not know of.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if threading.active_count() != 1 or _os_threads() != 1:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1  # no /proc: threading's count decides


class ForkedProcess:
    """A forked child as ``LocalProcessLauncher`` uses a ``subprocess.Popen``: pid, stdin, poll, wait, signals."""

    def __init__(self, pid: int, stdin: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code (negative: the signal that ended it), or None while it runs; reaps the child."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its code is lost
                self.returncode = 255
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the exit (``subprocess.TimeoutExpired`` after ``timeout`` seconds) without polling."""
        if self.poll() is not None:
            return self.returncode  # type: ignore[return-value]
        if timeout is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        deadline = time.monotonic() + timeout
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = -1
        try:
            while self.poll() is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(f"slot process {self.pid}", timeout)
                if pidfd >= 0:
                    select.select([pidfd], [], [], remaining)  # readable once the child has exited
                else:
                    time.sleep(min(0.01, remaining))
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        """Signals the child unless it was already reaped (its pid may belong to another process by now)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def _stream(fd: int, errors: str) -> IO[str] | None:
    """A line-buffered text stream on ``fd``, or None when the fd is closed (as a new interpreter would have)."""
    try:
        return open(fd, "w", buffering=1, errors=errors, closefd=False)
    except OSError:
        return None


def fork_slot(
    entry: str,
    log_path: Path,
    env: dict[str, str],
    *,
    tie: Callable[[], None] | None,
    kwargs: dict[str, Any] | None = None,
) -> ForkedProcess:
    """Forks a slot that runs ``entry`` (``MODULE:FUNCTION``, called with ``kwargs``) in the child.

    The child keeps only its standard streams: every other descriptor of the parent is closed in it,
    the other slots' address pipes among them (each slot then sees the end of its own pipe when the
    parent closes it or dies) and whatever a job opened before a second ``prestart``.
    """
    module, _, function = entry.partition(":")
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # else the child would write the parent's buffered text again
    read_end, write_end = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 1
        try:
            if tie is not None:
                tie()
            os.dup2(log_fd, 2)
            os.dup2(read_end, 0)
            os.closerange(3, _max_fd())  # nothing else of the parent's (a spawned slot gets close_fds too)
            os.environ.clear()
            os.environ.update(env)
            # the parent's streams may be objects of their own (a test's capture): write to the fds, as spawned
            sys.stdout = _stream(1, "strict")
            sys.stderr = _stream(2, "backslashreplace")
            code = getattr(importlib.import_module(module), function)(**(kwargs or {}))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            try:
                traceback.print_exc()
                sys.stderr.flush()
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(read_end)
    os.close(log_fd)
    return ForkedProcess(pid, os.fdopen(write_end, "wb"))
