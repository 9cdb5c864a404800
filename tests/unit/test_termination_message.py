"""The terminal contract's JobMaster side: the termination message, what is final at start-up, the CLI writing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamjob.worker.cli import main
from streamjob.worker.errors import (
    CheckpointError,
    ConfigError,
    CorruptStateError,
    EntrypointError,
    MetadataError,
    PipelineError,
    RestoreError,
    StorageError,
)
from streamjob.worker.failures import final_at_start
from streamjob.worker.protocol.termination import FINAL_MARKER, MAX_BYTES, PATH_ENV, format_message, parse_message

pytestmark = pytest.mark.unit


def test_a_final_message_starts_with_the_marker_and_parses_back() -> None:
    text = format_message("worker slot 0 cannot load the job: boom; fix the job", final=True)
    assert text.splitlines()[0] == FINAL_MARKER
    assert parse_message(text) == (True, "worker slot 0 cannot load the job: boom; fix the job")


def test_an_ordinary_failure_is_just_its_reason() -> None:
    text = format_message("worker slot 1 (pid 7) was lost", final=False)
    assert FINAL_MARKER not in text
    assert parse_message(text) == (False, "worker slot 1 (pid 7) was lost")


def test_a_long_reason_is_cut_to_what_kubernetes_keeps_and_stays_final() -> None:
    text = format_message("é" * 10_000, final=True)  # two bytes a character: the cut must not split one
    assert len(text.encode()) <= MAX_BYTES
    final, reason = parse_message(text)
    assert final and reason.startswith("é") and reason.endswith("...")


def test_a_log_tail_with_the_marker_is_final_and_without_it_is_not() -> None:
    tail = "INFO starting\nINFO job attempt 1 failed: x\n" + FINAL_MARKER + "\nerror: the job's entrypoint raised\n"
    assert parse_message(tail) == (True, "error: the job's entrypoint raised")
    crash = "line 1\nline 2\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
    final, reason = parse_message(crash)
    assert not final and reason.endswith("ValueError: bad") and "line 1" not in reason
    assert parse_message("") == (False, "")
    assert parse_message(f"a job printing {FINAL_MARKER} inside a line")[0] is False


@pytest.mark.parametrize(
    ("err", "final"),
    [
        (ConfigError("bad value"), True),
        (EntrypointError("no module named nosuch"), True),
        (PipelineError("duplicate uid"), True),
        (CorruptStateError("state file damaged"), True),
        (RestoreError("serializer changed"), True),
        (StorageError("S3 unreachable"), False),
        (MetadataError("_metadata missing"), False),
        (CheckpointError("x"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_what_is_final_at_start_up(err: Exception, final: bool) -> None:
    assert final_at_start(err) is final


def _jobmaster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, object]) -> tuple[int, str]:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"name": "t", "rest_host": "127.0.0.1", "rest_port": 0, "control_port": 0, **config}))
    log = tmp_path / "termination-log"
    monkeypatch.setenv(PATH_ENV, str(log))
    monkeypatch.setenv("STREAMJOB_JOB_SECRET", "s" * 32)
    code = main(["jobmaster", "--config", str(path)])
    return code, log.read_text() if log.exists() else ""


def test_a_job_module_that_does_not_import_at_start_up_is_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, message = _jobmaster(
        tmp_path, monkeypatch, {"entrypoint": "nosuch_module_xyz:build", "checkpoints_uri": tmp_path.as_uri()}
    )
    assert code == 2
    final, reason = parse_message(message)
    assert final and "nosuch_module_xyz" in reason, message
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [FINAL_MARKER, f"error: {reason}"]  # the log's tail says the same (FallbackToLogsOnError)


def test_a_missing_restore_point_at_start_up_is_not_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "balance.py"
    missing = (tmp_path / "ck" / "nojob" / "chk-9").as_uri()
    code, message = _jobmaster(
        tmp_path,
        monkeypatch,
        {"entrypoint": str(example), "checkpoints_uri": (tmp_path / "ck").as_uri(), "restore_from": missing},
    )
    assert code == 3, message
    final, reason = parse_message(message)
    assert not final and "chk-9" in reason, message


def test_an_unwritable_termination_file_does_not_hide_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PATH_ENV, str(tmp_path))  # a directory: writing it fails
    monkeypatch.setenv("STREAMJOB_JOB_SECRET", "s" * 32)
    config = tmp_path / "job.json"
    config.write_text(json.dumps({"name": "t", "entrypoint": "nosuch_module_xyz:build"}))
    assert main(["jobmaster", "--config", str(config)]) == 2
    assert "nosuch_module_xyz" in capsys.readouterr().err
