"""Local mode, real processes: checkpoints land in storage and a SIGKILLed worker costs no record.

Every test runs the keyed-sum job (``jobs/keyed_sum.py``) with ``streamjob run`` and checks the
committed FileSink output against the failure-free result computed in the test. Storage-bound tests
run on ``file://`` and on the real SeaweedFS ``s3://``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamjob.worker.local import SLOT_FORK_ENV
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, REST_TOKEN_ENV, derive_rest_token, new_job_secret
from streamjob.worker.testing import FaultInjector, LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, run_with_kill

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(params=["file", "s3"])
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh storage root on the local filesystem or on the real S3 server."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_prefix"))
    return tmp_path_factory.mktemp("root").as_uri()


def test_job_checkpoints_and_cli_lists_them(root: str) -> None:
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    with LocalJob(KEYED_SUM, f"out={out}", "count=1500", "rate=1500", checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(2)
        job_id = job.job()["id"]
        assert job.wait() == 0, job.describe()
    completed = [int(m) for m in re.findall(r"checkpoint (\d+) completed", job.output())]
    assert completed, job.describe()

    listing = run_cli("checkpoints", checkpoints, "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert rows, listing.stdout
    assert {r["kind"] for r in rows} == {"checkpoint"}
    assert {r["job_id"] for r in rows} == {job_id}
    assert max(r["id"] for r in rows) == max(completed)
    assert all(r["location"].startswith(f"{checkpoints}/local/keyed-sum/{job_id}/chk-") for r in rows)

    table = run_cli("checkpoints", checkpoints)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["KIND", "ID", "JOB"]
    assert f"chk-{max(completed)}" in table.stdout

    assert keyed_sum.check_exactly_once(read_committed(out), 1500) is None


def test_killed_worker_recovers_with_exact_output(root: str) -> None:
    injector = FaultInjector(checkpoints=(1, 3), workers=2)
    events = run_with_kill(root, injector)
    problem = keyed_sum.check_exactly_once(read_committed(f"{root}/out"), events)
    assert problem is None, f"{injector}: {problem}"


def test_killed_worker_at_least_once_loses_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("alo").as_uri()
    injector = FaultInjector(checkpoints=(1, 3), workers=2)
    events = run_with_kill(root, injector, ["--mode", "AT_LEAST_ONCE"])
    problem = keyed_sum.check_at_least_once(read_committed(f"{root}/out"), events)
    assert problem is None, f"{injector}: {problem}"


@pytest.mark.parametrize("delay_ms", [3000, 200])
def test_sigterm_while_the_job_keeps_failing_cancels_it(tmp_path: Path, delay_ms: int) -> None:
    """SIGTERM (a pod's deletion, ``timeout``, Ctrl-C) ends a job that fails and restarts over and over.

    With a long restart delay the signal lands while the JobMaster waits to restart; with a short one
    it lands in or between attempts. Either way no further attempt starts and the process exits.
    """
    entry = str(Path(__file__).resolve().parent / "jobs" / "always_failing.py")
    with LocalJob(entry, f"delay_ms={delay_ms}", checkpoint_dir=(tmp_path / "ck").as_uri()) as job:
        job.wait_for_line(r"restarting in .* \(restart 2\)", timeout=60)
        job._require().send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 0, job.describe()
    output = job.output()
    after = output[output.index("interrupted: cancelling the job") :]
    assert "job CANCELED" in after, job.describe()
    assert "attempt" not in after.replace("the job attempt ended", ""), job.describe()


def test_a_slot_process_that_dies_before_registering_fails_the_attempt_at_once(tmp_path: Path) -> None:
    """A slot that exits before it registers is reported within seconds, with its last log line.

    Before, the JobMaster waited out the registration timeout (120 s) in silence. The slot processes
    die for real: a ``sitecustomize`` on their PYTHONPATH exits with code 7 when the process is a slot
    (a new interpreter: ``STREAMJOB_SLOT_FORK=0``, as forked slots run no ``sitecustomize``). Then
    SIGTERM while the next attempt's slots start ends the run at once.
    """
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'slot' in sys.argv:\n"
        "    sys.stderr.write('boom: this slot cannot start\\n')\n"
        "    sys.stderr.flush()\n"
        "    os._exit(7)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", "")) if p)
    env[SLOT_FORK_ENV] = "0"
    out = (tmp_path / "out").as_uri()
    with LocalJob(KEYED_SUM, f"out={out}", "count=100", checkpoint_dir=(tmp_path / "ck").as_uri(), env=env) as job:
        started = time.monotonic()
        job.wait_for_line(r"slot process 0 exited with code 7 before it registered", timeout=30)
        assert time.monotonic() - started < 20, job.describe()
        assert "boom: this slot cannot start" in job.output(), job.describe()
        job._require().send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 0, job.describe()
    assert "job CANCELED" in job.output(), job.describe()


def test_cancel_while_the_jobmaster_waits_for_worker_pods_ends_it_at_once(tmp_path: Path) -> None:
    """Kubernetes mode: ``POST /cancel`` before any worker registered ends the JobMaster in seconds.

    Before, the JobMaster noticed the cancel only after the registration timeout (120 s).
    """
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "name": "waiting",
                "entrypoint": KEYED_SUM,
                "args": [f"out={(tmp_path / 'out').as_uri()}"],
                "checkpoints_uri": (tmp_path / "ck").as_uri(),
                "rest_host": "127.0.0.1",
                "rest_port": 0,
                "workers": 2,
                "control_port": 0,
            }
        )
    )
    secret = new_job_secret()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamjob.worker.cli", "jobmaster", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, JOB_SECRET_ENV: secret},
    )
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            found = re.search(r"serving the REST API on 127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the JobMaster never served its REST API"
        started = time.monotonic()
        token = derive_rest_token(secret)
        assert (
            run_cli(
                "cancel", "--jobmaster", f"http://127.0.0.1:{port}", env={**os.environ, REST_TOKEN_ENV: token}
            ).returncode
            == 0
        )
        proc.wait(timeout=30)
        assert time.monotonic() - started < 10
        output = proc.stdout.read()
        assert "only 0 of 2 worker slots registered" not in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
