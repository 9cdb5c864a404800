"""``streamjob`` argument parsing: job arguments after ``--``, options checked before any request."""

from __future__ import annotations

import pytest

from streamjob.worker.cli_parser import parse_args
from streamjob.worker.cli_values import checkpoint_keys, parse_define, split_job_args
from streamjob.worker.config import CheckpointOverrides
from streamjob.worker.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "job.py", "-p", "2", "--rest-port", "0", "--", "1000", "--flag"],
        ["run", "-p", "2", "--rest-port", "0", "job.py", "--", "1000", "--flag"],
        ["run", "-p", "2", "--rest-port", "0", "--", "job.py", "1000", "--flag"],
        ["--debug", "run", "job.py", "1000", "-p", "2", "--rest-port", "0", "--", "--flag"],
        ["--log-level", "INFO", "run", "job.py", "-p", "2", "1000", "--rest-port", "0", "--", "--flag"],
    ],
)
def test_job_arguments_may_follow_the_options(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.entrypoint, args.args, args.parallelism, args.rest_port) == ("job.py", ["1000", "--flag"], 2, 0)


def test_only_runs_argv_is_split() -> None:
    assert split_job_args(["checkpoints", "--", "-odd-dir"]) == (["checkpoints", "--", "-odd-dir"], [])
    assert split_job_args(["--log-level", "run", "run", "j.py", "--", "x"]) == (
        ["--log-level", "run", "run", "j.py"],
        ["x"],
    )
    assert split_job_args(["run", "j.py", "-5"]) == (["run", "j.py", "-5"], [])


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_run_errors_show_runs_usage(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["run", "job.py", "--bogus", "--", "1"], capsys)
    assert err.startswith("usage: streamjob run [options] ENTRYPOINT")
    assert "streamjob run: error: unrecognized arguments: --bogus" in err
    err = _usage_error(["run", "--rest-port", "0"], capsys)
    assert "streamjob run: error: the following arguments are required: ENTRYPOINT" in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["savepoint", "--jobmaster", "nonsense::x"], "argument --jobmaster: 'nonsense::x' is not a JobMaster REST"),
        (["savepoint", "--jobmaster", "ftp://host:1"], "is not a JobMaster REST address"),
        (
            ["savepoint", "--jobmaster", "127.0.0.1:8081", "--stop", "--timeout", "abc"],
            "argument --timeout: 'abc' is not a duration",
        ),
        (["cancel", "--jobmaster", "host:99999"], "argument --jobmaster: 'host:99999'"),
        (["worker", "--jobmaster", "host"], "argument --jobmaster: 'host' is not a JobMaster address; use HOST:PORT"),
        (["run", "--checkpoint-interval", "soon", "job.py"], "argument --checkpoint-interval: 'soon'"),
    ],
)
def test_bad_option_values_are_usage_errors(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(argv, capsys)
    assert fragment in err and "Traceback" not in err
    assert err.startswith(f"usage: streamjob {argv[0]}")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("http://job-rest.ns.svc:8081/", "http://job-rest.ns.svc:8081"),
        ("https://jm.example.com", "https://jm.example.com"),
        ("[::1]:8081", "http://[::1]:8081"),
    ],
)
def test_jobmaster_addresses(text: str, url: str) -> None:
    assert parse_args(["savepoint", "--jobmaster", text]).jobmaster == url
    assert parse_args(["cancel", "--jobmaster", text]).jobmaster == url


def test_worker_takes_host_port_or_a_plain_http_url() -> None:
    assert parse_args(["worker", "--jobmaster", "10.0.0.5:8081"]).jobmaster == "10.0.0.5:8081"
    assert parse_args(["worker", "--jobmaster", "http://10.0.0.5:8081"]).jobmaster == "10.0.0.5:8081"


def test_every_checkpoint_override_is_a_define_key() -> None:
    keys = checkpoint_keys()
    assert list(keys) == list(CheckpointOverrides.model_fields)
    assert keys["mode"] == "EXACTLY_ONCE|AT_LEAST_ONCE" and keys["unaligned"] == "true|false"
    assert keys["timeout_ms"] == "DURATION" and keys["retained"] == "N"


def test_defines_take_typed_values() -> None:
    assert parse_define("checkpoint.timeout_ms=5s") == ("timeout_ms", 5000)
    assert parse_define("checkpoint.aligned_timeout_ms=200") == ("aligned_timeout_ms", 200)
    assert parse_define("checkpoint.unaligned=true") == ("unaligned", True)
    assert parse_define("checkpoint.mode=AT_LEAST_ONCE") == ("mode", "AT_LEAST_ONCE")


def test_an_unknown_define_names_the_closest_and_every_valid_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_define("checkpoint.timeout=5s")
    message = str(caught.value)
    assert message.startswith("unknown checkpoint setting 'timeout'; did you mean checkpoint.timeout_ms?")
    assert all(key in message for key in CheckpointOverrides.model_fields)
    with pytest.raises(ConfigError, match=r"'unaligned' is not checkpoint.KEY=VALUE"):
        parse_define("unaligned")


def test_run_help_lists_every_define_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"{key}=" in text for key in CheckpointOverrides.model_fields)
    assert "DELETE_ON_CANCELLATION" in text


def test_the_internal_slot_command_is_not_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    assert "SUPPRESS" not in out and " slot " not in out
    assert parse_args(["slot", "--jobmaster", "127.0.0.1:1"]).command == "slot"
