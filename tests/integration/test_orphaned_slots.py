"""Local slot processes die with their JobMaster, even when it is SIGKILLed while they start.

``PR_SET_PDEATHSIG`` used to be set by the slot itself after Python had imported the runtime: a
``streamjob run`` killed in that window (the first second of its slots) left them retrying its REST
port for 600 s, ready to register with whatever JobMaster came up on that port next.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streamjob.worker.protocol.auth import JOB_SECRET_ENV, new_job_secret
from tests.integration.jobs.support import KEYED_SUM

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
MARK = "STREAMJOB_TEST_ORPHAN_MARK"


def _marked(mark: str) -> list[int]:
    """Pids of the live processes whose environment carries ``mark`` (this test's run and its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"{MARK}={mark}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_slots_die_with_a_jobmaster_killed_as_they_start(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark}
    cmd = [
        sys.executable,
        "-m",
        "streamjob.worker.cli",
        "run",
        "--rest-port",
        "0",
        "--parallelism",
        "2",
        "--checkpoint-dir",
        (tmp_path / "chk").as_uri(),
        KEYED_SUM,
        f"out={(tmp_path / 'out').as_uri()}",
        "count=100000",
        "rate=1000",
    ]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    slots: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not slots:  # the first slot process: kill the JobMaster at once, in its start-up
            assert run.poll() is None, "streamjob run exited before it started its slots"
            assert time.monotonic() < deadline, "no slot process was started within 60 s"
            slots = [pid for pid in _marked(mark) if pid != run.pid]
            if not slots:
                time.sleep(0.002)
        os.kill(run.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        run.wait(10)
        slots = sorted(set(slots) | set(_marked(mark)))  # any slot forked just before the kill
        survivors = slots
        while survivors and time.monotonic() - killed_at < 5:
            time.sleep(0.05)
            survivors = _marked(mark)
        assert survivors == [], f"slot processes {survivors} outlived their JobMaster by 5 s (all: {slots})"
    finally:
        if run.poll() is None:
            run.kill()
        for pid in _marked(mark):  # only what this test started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_slots_of_a_killed_streamjob_worker_die_with_it() -> None:
    """``streamjob worker --slots N`` stands for a pod: its slots (retrying an absent JobMaster) go with it."""
    mark = uuid.uuid4().hex
    worker = subprocess.Popen(
        [sys.executable, "-m", "streamjob.worker.cli", "worker", "--slots", "2", "--jobmaster", "127.0.0.1:9"],
        env={**os.environ, MARK: mark, JOB_SECRET_ENV: new_job_secret()},  # a worker refuses to start without it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        slots: list[int] = []
        while len(slots) < 2:
            assert worker.poll() is None, "streamjob worker exited before it started its slots"
            assert time.monotonic() < deadline, "the slot processes were not started within 60 s"
            slots = [pid for pid in _marked(mark) if pid != worker.pid]
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        killed_at = time.monotonic()
        survivors = slots
        while survivors and time.monotonic() - killed_at < 5:
            time.sleep(0.05)
            survivors = _marked(mark)
        assert survivors == [], f"slot processes {survivors} outlived their worker by 5 s"
    finally:
        if worker.poll() is None:
            worker.kill()
        for pid in _marked(mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
