"""The ``streamjob`` command line as a user types it: argument forms, usage errors, help, Ctrl-C."""

from __future__ import annotations

import http.server
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamjob.worker.storage import list_snapshots
from streamjob.worker.testing import LocalJob, run_cli
from tests.integration.jobs.support import KEYED_SUM

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def echo_job(tmp_path: Path) -> Path:
    """A bounded job that prints the arguments its build function received."""
    job = tmp_path / "echo_args.py"
    job.write_text(
        textwrap.dedent("""\
        from streamjob.worker.api import StreamExecutionEnvironment

        def build(args):
            print("JOB ARGS", args, flush=True)
            env = StreamExecutionEnvironment.get_execution_environment()
            env.from_elements(1, 2, 3).uid("numbers").map(lambda x: x).uid("same").print()
            env.execute("echo-args")
    """)
    )
    return job


def test_options_after_the_entrypoint_then_job_args_after_dashes(echo_job: Path, tmp_path: Path) -> None:
    result = run_cli(
        "run",
        str(echo_job),
        "-p",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--rest-port",
        "0",
        "--",
        "1000",
        "--verbose",
    )
    assert result.returncode == 0, result.stderr
    assert "JOB ARGS ['1000', '--verbose']" in result.stdout
    assert "at parallelism 2" in result.stderr


def test_an_unknown_option_shows_runs_usage(echo_job: Path) -> None:
    result = run_cli("run", str(echo_job), "--paralelism", "2", "--", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: streamjob run ")
    assert "unrecognized arguments: --paralelism" in result.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_POST(self) -> None:
        _Recorder.requests.append(self.path)
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jobmaster_stub() -> Iterator[str]:
    """A REST endpoint that records every request it gets."""
    _Recorder.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_savepoint_options_are_checked_before_the_jobmaster_is_asked(jobmaster_stub: str) -> None:
    result = run_cli("savepoint", "--jobmaster", jobmaster_stub, "--stop", "--timeout", "abc")
    assert result.returncode == 2
    assert "argument --timeout: 'abc' is not a duration" in result.stderr
    assert _Recorder.requests == []


@pytest.mark.parametrize("command", ["savepoint", "cancel"])
def test_a_malformed_jobmaster_address_is_one_line(command: str) -> None:
    result = run_cli(command, "--jobmaster", "nonsense::x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'nonsense::x' is not a JobMaster REST address; use HOST:PORT" in errors[0]


def test_the_command_list_hides_the_internal_slot_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
    assert "SUPPRESS" not in result.stdout and "slot" not in commands
    assert "run" in commands and "savepoint" in commands


def test_checkpoint_define_errors_are_clean_lines(echo_job: Path) -> None:
    unknown = run_cli("run", "--rest-port", "0", "-D", "checkpoint.timeout=5s", str(echo_job))
    assert unknown.returncode == 2
    assert "unknown checkpoint setting 'timeout'; did you mean checkpoint.timeout_ms?" in unknown.stderr
    clash = run_cli(
        "run",
        "--rest-port",
        "0",
        "-D",
        "checkpoint.max_concurrent=2",
        "-D",
        "checkpoint.unaligned=true",
        str(echo_job),
    )
    assert clash.returncode == 2 and "Traceback" not in clash.stderr
    assert clash.error_lines == [
        "error: the job's checkpoint settings with the overrides max_concurrent=2, "
        "unaligned=true are invalid: unaligned checkpoints need max_concurrent = 1, as in Flink"
    ]


def test_a_file_without_build_says_so(tmp_path: Path) -> None:
    job = tmp_path / "constants.py"
    job.write_text("x = 1\n")
    result = run_cli("run", "--rest-port", "0", str(job))
    assert result.returncode == 2
    assert len(result.error_lines) == 1 and "has no build() function" in result.error_lines[0]


def test_ctrl_c_says_the_checkpoints_are_deleted_under_delete_on_cancellation(tmp_path: Path) -> None:
    checkpoints = (tmp_path / "ck").as_uri()
    with LocalJob(
        KEYED_SUM,
        f"out={tmp_path.as_uri()}/out",
        "count=100000",
        "rate=500",
        "cleanup=delete",
        checkpoint_dir=checkpoints,
    ) as job:
        job.wait_for_checkpoints(1)
        job.interrupt()
        assert job.wait(timeout=60) == 0, job.describe()
    assert "interrupted: cancelling the job and deleting its checkpoints" in job.output(), job.describe()
    assert "checkpoints are kept" not in job.output()
    assert list_snapshots(checkpoints) == []


def test_the_last_checkpoint_line_of_a_bounded_job_counts_every_record(tmp_path: Path) -> None:
    """The count comes with the acknowledgements and the end of input, not only the 1 s metrics reports."""
    result = run_cli(
        "run",
        "-p",
        "2",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        KEYED_SUM,
        f"out={tmp_path.as_uri()}/out",
        "count=3000",
        "rate=3000",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "] checkpoint " in line and " completed in " in line]
    assert lines, result.stderr
    assert "— 3,000 records read —" in lines[-1], lines[-1]


def _without_secret() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("STREAMJOB_JOB_SECRET", "STREAMJOB_JOB_SECRET_FILE")}


@pytest.mark.parametrize(
    "command",
    [
        ["jobmaster", "--config", "/nonexistent/job.json"],
        ["worker", "--jobmaster", "127.0.0.1:6123"],
        ["slot", "--jobmaster", "127.0.0.1:6123"],
    ],
)
def test_kubernetes_processes_refuse_to_start_without_the_job_secret(command: list[str]) -> None:
    result = run_cli(*command, env=_without_secret(), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.error_lines == [result.error_lines[0]] and "STREAMJOB_JOB_SECRET" in result.error_lines[0]


def test_a_too_short_job_secret_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "slot", "--jobmaster", "127.0.0.1:6123", env={**_without_secret(), "STREAMJOB_JOB_SECRET": "x"}, timeout=30
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.error_lines) == 1 and "at least 32" in result.error_lines[0]
