"""Forked slot processes (``jobmaster/forked.py``): pipe, log, environment, exit codes, and when forking is refused.

Real forks of this test process; each child runs one of the small entries below instead of a slot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamjob.worker.jobmaster.forked import ForkedProcess, can_fork, fork_slot

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="slots are forked on Linux only"),
]

HERE = __name__


def echo_entry() -> int:
    """Reads one line from standard input and writes it, the environment's marker and its fds to standard error."""
    line = os.read(0, 256).decode().strip()
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))  # 0, 1, 2 and listdir's own
    marker, home = os.environ.get("FORK_TEST_MARKER"), os.environ.get("HOME")
    print(f"got {line} marker={marker} home={home} fds={fds[:3]} {len(fds)}", file=sys.stderr)
    return 7


def read_to_end_entry() -> int:
    """Ends (exit 0) when its standard input closes."""
    while os.read(0, 256):
        pass
    return 0


def exit_entry() -> int:
    sys.exit(3)


def _fork(tmp_path: Path, entry: str, name: str = "slot") -> ForkedProcess:
    return fork_slot(f"{HERE}:{entry}", tmp_path / f"{name}.log", {"FORK_TEST_MARKER": "m1"}, tie=None)


def test_the_child_reads_its_pipe_logs_to_its_file_and_gets_only_the_given_environment(tmp_path: Path) -> None:
    """And keeps none of the parent's other descriptors (here: an open file's)."""
    with (tmp_path / "parent-file").open("wb"):  # open in the parent while it forks
        proc = _fork(tmp_path, "echo_entry")
    assert proc.stdin is not None
    proc.stdin.write(b"127.0.0.1:5\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 7
    assert proc.poll() == 7
    assert (tmp_path / "slot.log").read_text().strip() == "got 127.0.0.1:5 marker=m1 home=None fds=[0, 1, 2] 4"


def test_system_exit_is_the_exit_code(tmp_path: Path) -> None:
    assert _fork(tmp_path, "exit_entry").wait(timeout=60) == 3


def test_an_entry_that_cannot_be_imported_exits_1_with_its_traceback_in_the_log(tmp_path: Path) -> None:
    proc = fork_slot("no_such_module_xyz:main", tmp_path / "bad.log", {}, tie=None)
    assert proc.wait(timeout=60) == 1
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in (tmp_path / "bad.log").read_text()


def test_wait_times_out_and_a_killed_child_reports_its_signal(tmp_path: Path) -> None:
    proc = _fork(tmp_path, "read_to_end_entry")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    proc.send_signal(signal.SIGKILL)  # reaped: never signals a pid that may be reused


def test_a_later_child_does_not_keep_an_earlier_childs_pipe_open(tmp_path: Path) -> None:
    """The second child inherits the first one's write end: it must close it, or the first never sees the end."""
    first = _fork(tmp_path, "read_to_end_entry", name="first")
    second = _fork(tmp_path, "read_to_end_entry", name="second")
    try:
        assert first.stdin is not None
        first.stdin.close()  # the end of the first one's input, although the second was forked after it
        assert first.wait(timeout=60) == 0
        assert second.poll() is None
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=60)


def test_forking_is_refused_while_a_thread_threading_does_not_know_of_runs() -> None:
    """A native thread (a C library's, started here with pthread_create through ctypes), in a fresh process."""
    probe = (
        "import ctypes, threading\n"
        "from streamjob.worker.jobmaster.forked import can_fork\n"
        "libc = ctypes.CDLL(None)\n"
        "before = can_fork()\n"
        "fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(lambda _arg: libc.pause())\n"
        "tid = ctypes.c_ulong()\n"
        "assert libc.pthread_create(ctypes.byref(tid), None, fn, None) == 0\n"
        "print(before, threading.active_count(), can_fork(), flush=True)\n"
        "libc._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.stdout.split() == ["True", "1", "False"], done.stderr


def test_forking_is_refused_while_another_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork()
    finally:
        stop.set()
        thread.join()
