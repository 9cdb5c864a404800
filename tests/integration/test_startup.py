"""Start-up of ``streamjob run``: slots prestarted while the JobMaster loads, and no import a job does not need.

The slot processes of the first attempt start before the JobMaster has a control port and read its
address from a pipe (``LocalProcessLauncher.prestart``); a file:// hashmap job must never load
boto3, RocksDB or (in the slots) aiohttp and prometheus_client: each costs start-up time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamjob.worker.jobmaster.launcher import LocalProcessLauncher
from streamjob.worker.local import SLOT_FORK_ENV
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, new_job_secret
from streamjob.worker.testing import read_committed
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, job_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NEVER = ("boto3", "botocore", "rocksdict", "streamjob.worker.storage.s3_store", "streamjob.worker.state.rocksdb")
NOT_IN_SLOTS = (*NEVER, "aiohttp", "prometheus_client", "streamjob.worker.jobmaster.rest")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_file_hashmap_job_imports_neither_s3_nor_rocksdb_nor_an_http_stack_in_its_slots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret()}
    env.pop("STREAMJOB_S3_ENDPOINT", None)
    cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--quiet", "--rest-port", "0", "-p", "2"]
    cmd += ["--checkpoint-dir", (tmp_path / "chk").as_uri(), job_path("modules_probe.py"), "--", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr
    jobmaster = set(json.loads((out / "jobmaster.json").read_text()))
    slots = [set(json.loads((out / f"slot-{i}.json").read_text())) for i in range(2)]
    assert "streamjob.worker.jobmaster.jobmaster" in jobmaster  # the probe saw the JobMaster's process
    assert "streamjob.worker.slot" in slots[0] and "streamjob.worker.slot" in slots[1]
    assert sorted(jobmaster & set(NEVER)) == []
    for modules in slots:
        assert sorted(modules & set(NOT_IN_SLOTS)) == []
    for i in range(2):  # forked while streamjob run held its collector off: each slot collects again
        assert json.loads((out / f"gc-slot-{i}.json").read_text()) == {"enabled": True, "threshold": [50_000, 20, 20]}


def _launcher(tmp_path: Path) -> LocalProcessLauncher:
    return LocalProcessLauncher(tmp_path / "logs", secret=new_job_secret())


def test_prestarted_slots_connect_to_the_address_start_hands_them(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    try:
        launcher.prestart(2, attempt=0)
        waiting = [p.pid for p in launcher.procs]
        assert len(waiting) == 2
        launcher.start(2, f"127.0.0.1:{server.getsockname()[1]}", attempt=0)
        assert [p.pid for p in launcher.procs] == waiting  # handed the address, not started again
        peers = [server.accept()[0] for _ in range(2)]  # each slot dials the control port it was given
        for peer in peers:
            peer.close()
    finally:
        launcher.stop_all()
        server.close()
    assert launcher.procs == []


def test_prestart_keeps_what_fits_and_start_adds_the_missing_slots(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    try:
        launcher.prestart(2, attempt=0)
        first = launcher.procs[0]
        surplus = launcher.procs[1]
        launcher.prestart(1, attempt=0)  # the graph needs fewer: none of the old two may register
        assert surplus.poll() is not None and first.poll() is not None
        assert len(launcher.procs) == 1
        kept = launcher.procs[0]
        launcher.prestart(1, attempt=0)  # same number: the waiting process is kept
        assert launcher.procs == [kept]
        launcher.start(3, f"127.0.0.1:{server.getsockname()[1]}", attempt=0)
        assert launcher.procs[0] is kept and len(launcher.procs) == 3
        assert [p.name for p in launcher.logs] == [f"slot-{i}-attempt-0.log" for i in range(3)]
        for _ in range(3):
            server.accept()[0].close()
    finally:
        launcher.stop_all()
        server.close()


def test_prestarted_slots_of_another_attempt_never_register(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path)
    try:
        launcher.prestart(1, attempt=0)
        old = launcher.procs[0]
        launcher.start(1, "127.0.0.1:9", attempt=3)
        assert old.poll() is not None  # killed, not handed the address
        assert [p.name for p in launcher.logs] == ["slot-0-attempt-3.log"]
    finally:
        launcher.stop_all()


def test_a_waiting_slot_whose_pipe_closes_ends_with_a_clear_error(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path)
    try:
        launcher.prestart(1, attempt=0)
        proc = launcher.procs[0]
        assert proc.stdin is not None
        proc.stdin.close()  # as when the JobMaster dies before it has a control port
        assert proc.wait(timeout=60) != 0
        log = launcher.logs[0].read_text()
        assert "error: the JobMaster ended before it gave this slot its address" in log, log
    finally:
        launcher.stop_all()


def _marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries ``STREAMJOB_TEST_MARK=mark``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes() if entry.isdigit() else b""
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] if environ else "Z"
        except OSError:
            continue
        if f"STREAMJOB_TEST_MARK={mark}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_bad_entrypoint_leaves_no_prestarted_slot_behind(tmp_path: Path) -> None:
    mark = new_job_secret()[:16]
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret(), "STREAMJOB_TEST_MARK": mark}
    cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "-p", "2", str(tmp_path / "missing.py")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert done.stderr.startswith("error: entrypoint file"), done.stderr
    _wait(lambda: not _marked(mark), 10, "the prestarted slots to be gone")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="slots are forked on Linux only")
@pytest.mark.parametrize(
    ("fork", "flags", "forked"),
    [("1", ["-p", "2"], 2), ("0", ["-p", "2"], 0), ("1", [], 1)],
    ids=["forked", "STREAMJOB_SLOT_FORK=0", "parallelism-in-the-code"],
)
def test_streamjob_run_forks_its_first_slots_and_they_run_the_job(
    tmp_path: Path, fork: str, flags: list[str], forked: int
) -> None:
    """The first attempt's slots are forked children of ``streamjob run`` (no ``python -m ... slot`` exec) and work.

    ``STREAMJOB_SLOT_FORK=0`` spawns them as ``streamjob slot`` processes instead; without ``-p`` only the
    slot of the guess is forked, the second one the job's code asks for is spawned (the job's module ran
    in the parent by then).
    """
    mark = new_job_secret()[:16]
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret(), "STREAMJOB_TEST_MARK": mark, SLOT_FORK_ENV: fork}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--quiet", "--rest-port", "0", *flags]
    cmd += ["--checkpoint-dir", (tmp_path / "chk").as_uri(), KEYED_SUM, f"out={out.as_uri()}", "count=2000", "rate=500"]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:

        def slot_cmdlines() -> list[bytes]:
            found: list[bytes] = []
            for pid in _marked(mark):
                try:
                    if pid != run.pid:
                        found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                except OSError:  # exited meanwhile
                    continue
            return found

        def settled() -> bool:
            # a spawned slot shows the parent's command line between its fork and its exec: wait until each
            # of the two is either still the parent's image (forked) or exec'ed as `streamjob slot`
            cmdlines = slot_cmdlines()
            spawned = sum(b"\0slot\0" in c for c in cmdlines)
            return (len(cmdlines) == 2 and spawned == 2 - forked) or run.poll() is not None

        _wait(settled, 60, "2 slots")
        slots = [p for p in _marked(mark) if p != run.pid]
        assert len(slots) == 2, slots
        parent_cmdline = Path(f"/proc/{run.pid}/cmdline").read_bytes()  # exec'ed long since: it forked the slots
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in slots]
        assert sum(c == parent_cmdline for c in cmdlines) == forked, cmdlines  # forked, never exec'ed
        assert sum(b"\0slot\0" in c for c in cmdlines) == 2 - forked, cmdlines  # spawned: `streamjob slot`
        for pid in slots:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            assert ppid == run.pid
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert keyed_sum.check_exactly_once(read_committed(out.as_uri()), 2000) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_taken_rest_port_fails_the_run_in_one_line_before_the_job_starts(tmp_path: Path) -> None:
    """The REST port is bound before the JobMaster starts (its HTTP server follows the first client)."""
    mark = new_job_secret()[:16]
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret(), "STREAMJOB_TEST_MARK": mark}
    out = tmp_path / "out"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--rest-port", str(port), "-p", "2"]
        cmd += ["--checkpoint-dir", (tmp_path / "chk").as_uri(), KEYED_SUM, f"out={out.as_uri()}", "count=100"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot serve the REST API on 127.0.0.1:{port}")
    assert "pass --rest-port 0" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()  # no record was written: the job never ran
    _wait(lambda: not _marked(mark), 10, "the prestarted slots to be gone")


def test_a_forked_slot_loads_the_job_while_streamjob_run_does(tmp_path: Path) -> None:
    """The slot's load of the job overlaps the JobMaster's, instead of following its Deploy message.

    Each load takes 0.4 s: loaded after the deployment, the slot's would begin after the JobMaster's
    had ended (the JobMaster deploys only a job it has loaded); preloaded, it begins while the
    JobMaster's still runs, and the deployment uses it (one load per process).
    """
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret()}
    cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--quiet", "--rest-port", "0", "-p", "1"]
    cmd += ["--checkpoint-dir", (tmp_path / "chk").as_uri(), job_path("load_probe.py"), "--", str(out)]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 0, stderr
    loads = [json.loads(p.read_text()) for p in out.glob("load-*.json")]
    jobmaster = [load for load in loads if load["pid"] == run.pid]
    slots = [load for load in loads if load["pid"] != run.pid]
    assert len(jobmaster) == 1 and len(slots) == 1, loads  # the deployment loaded nothing again
    assert slots[0]["start"] < jobmaster[0]["end"], loads
