"""Attacks on a running job's REST API: real ``streamjob run`` processes, raw HTTP clients.

Without the job's REST token nothing that changes the job gets through (401 without a token, 403
with a wrong one) and the job runs on to an exactly-once result; with the token a savepoint target
outside the job's savepoint roots, relative or with ``..`` is refused and nothing is written there.
The CLI with the token works, and without it fails with one line saying how to give it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.protocol.auth import (
    JOB_SECRET_ENV,
    JOB_SECRET_FILE_ENV,
    REST_TOKEN_ENV,
    REST_TOKEN_FILE_ENV,
    derive_rest_token,
    new_job_secret,
)
from streamjob.worker.testing import LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COUNT = 200_000  # at rate 500 the first run lasts far longer than the attacks; it is stopped with a savepoint


def raw(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One HTTP call as any local process could make it: (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a client that has no token: none set, no token file where the CLI looks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (REST_TOKEN_ENV, REST_TOKEN_FILE_ENV, JOB_SECRET_ENV, JOB_SECRET_FILE_ENV)
    }
    elsewhere = tmp_path / "elsewhere-runtime"
    elsewhere.mkdir(exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(elsewhere)
    return env


def assert_running(job: LocalJob) -> None:
    info = job.job()
    assert (info["state"], info["restarts"]) == ("RUNNING", 0), info


def test_without_the_token_nothing_changes_and_targets_stay_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out, checkpoints, savepoints = (root / "out").as_uri(), (root / "ck").as_uri(), root / "sp"
    extra, outside = tmp_path / "extra", tmp_path / "outside"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    job = LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=500",
        parallelism=2,
        checkpoint_dir=checkpoints,
        savepoint_dir=str(savepoints),
        checkpoint_interval="1h",
        cwd=cwd,
        options=["--allow-savepoint-root", str(extra)],
    )
    with job:
        job.wait_for_running()
        base = job.rest_url
        token_file = job.rest_token_file
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert re.search(rf"export {REST_TOKEN_ENV}=\$\(cat {re.escape(str(token_file))}\)", job.output())
        token = job.rest_token
        wrong = derive_rest_token(new_job_secret())

        mutating: list[tuple[str, dict[str, Any]]] = [
            ("/cancel", {}),
            ("/savepoints", {"stop": True}),
            ("/savepoints", {"target": outside.as_uri()}),
            ("/savepoints", {"target": (savepoints / "x").as_uri()}),
            ("/checkpoints", {}),
        ]
        for path, body in mutating:
            for headers in (
                {},
                {"Authorization": "Basic dXNlcjpwYXNz"},
                {"Authorization": "Bearer"},
                {"Authorization": token},
            ):
                status, answer = raw("POST", base + path, body, headers)
                assert status == 401, (path, headers, status, answer)
                assert "Authorization: Bearer" in answer["error"] and "--token-file" in answer["error"]
            for bad in (wrong, token[:-1], token + "0", token.upper()):
                status, answer = raw("POST", base + path, body, {"Authorization": f"Bearer {bad}"})
                assert status == 403, (path, status, answer)
                assert "not this job's" in answer["error"]
        assert_running(job)
        counts = job.checkpoints()["counts"]
        assert counts == {"completed": 0, "failed": 0, "in_progress": 0}, counts
        assert not outside.exists() and not savepoints.exists()

        # with the token: targets outside the roots, relative or with '..' are refused, nothing is written
        auth = {"Authorization": f"Bearer {token}"}
        refused = {
            outside.as_uri(): 403,
            str(outside / "sp"): 403,
            f"{savepoints}-evil": 403,  # shares the prefix of the text, not of the path
            str(tmp_path): 403,
            "relative/dir": 400,
            "./sp": 400,
            f"{savepoints}/../../outside": 400,
            f"file://{savepoints}/%2e%2e/%2e%2e/outside": 400,
            f"file://{savepoints}//x": 400,
            "file://evil.example/tmp/x": 400,
        }
        for target, code in refused.items():
            status, answer = raw("POST", f"{base}/savepoints", {"target": target}, auth)
            assert status == code, (target, status, answer)
            assert "savepoint target" in answer["error"], answer
        assert not outside.exists() and not Path(f"{savepoints}-evil").exists()
        assert list(cwd.iterdir()) == [] and not list(tmp_path.glob("savepoint-*"))
        assert not savepoints.exists()  # no refused request got as far as creating a directory
        assert_running(job)

        # with the token everything works: a checkpoint, savepoints in the root and in the allowed root
        status, started = raw("POST", f"{base}/checkpoints", {}, auth)
        assert status == 202, started
        job.wait_for_checkpoints(1)
        mine = job.trigger_savepoint(target=(savepoints / "mine").as_uri())
        assert mine.startswith((savepoints / "mine").as_uri() + "/savepoint-")
        assert "_metadata" in tree_digest(mine)
        other = job.trigger_savepoint(target=f"{extra}/")
        assert other.startswith(extra.as_uri() + "/savepoint-") and "_metadata" in tree_digest(other)

        # the CLI: without a token one line saying how to give it; a wrong token one line; then stop
        env = clean_env(tmp_path)
        for command in (["savepoint", "--timeout", "30s"], ["cancel"]):
            result = run_cli(*command, "--jobmaster", base, env=env)
            assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
            assert len(result.error_lines) == 1, result.stderr
            assert "needs the job's REST token" in result.error_lines[0]
            assert "--token-file" in result.error_lines[0] and REST_TOKEN_ENV in result.error_lines[0]
        wrong_file = tmp_path / "wrong.token"
        wrong_file.write_text(wrong)
        result = run_cli("savepoint", "--jobmaster", base, "--token-file", str(wrong_file), env=env)
        assert result.returncode != 0 and len(result.error_lines) == 1, result.stderr
        assert "is not this job's" in result.error_lines[0] and "Traceback" not in result.stderr
        assert_running(job)
        stopped = run_cli(
            "savepoint", "--stop", "--jobmaster", base, "--token-file", str(token_file), "--timeout", "90s", env=env
        )
        assert stopped.returncode == 0, stopped.stderr
        assert job.wait() == 0, job.describe()
    savepoint = stopped.stdout.strip()
    assert savepoint.startswith(savepoints.as_uri() + "/local/keyed-sum/savepoint-"), savepoint
    assert not token_file.exists()  # the per-run token file goes with the run

    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=0",
        parallelism=2,
        checkpoint_dir=checkpoints,
        restore=savepoint,
    ) as resumed:
        assert resumed.wait(timeout=240) == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), COUNT)
    assert problem is None, problem


def test_cancel_needs_the_token(tmp_path: Path) -> None:
    out, checkpoints = (tmp_path / "out").as_uri(), (tmp_path / "ck").as_uri()
    secret = new_job_secret()
    env = {**clean_env(tmp_path), JOB_SECRET_ENV: secret}  # the run takes the secret given to it
    chosen = tmp_path / "chosen.token"
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={COUNT}",
        "rate=500",
        checkpoint_dir=checkpoints,
        env=env,
        options=["--rest-token-file", str(chosen)],
    ) as job:
        job.wait_for_running()
        assert job.rest_token_file == chosen and stat.S_IMODE(chosen.stat().st_mode) == 0o600
        assert job.rest_token == derive_rest_token(secret)
        status, _ = raw("POST", f"{job.rest_url}/cancel")
        assert status == 401
        status, _ = raw(
            "POST", f"{job.rest_url}/cancel", {}, {"Authorization": f"Bearer {derive_rest_token(secret + 'x')}"}
        )
        assert status == 403
        assert_running(job)
        result = run_cli(
            "cancel", "--jobmaster", job.rest_url, env={**clean_env(tmp_path), REST_TOKEN_ENV: job.rest_token}
        )
        assert result.returncode == 0, result.stderr
        assert job.wait() == 0, job.describe()
    assert "job CANCELED" in job.output()
    assert chosen.read_text().strip() == derive_rest_token(secret)  # a file the user chose is left to the user


def test_a_jobmaster_without_a_job_secret_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {"name": "nosecret", "entrypoint": KEYED_SUM, "checkpoints_uri": (tmp_path / "ck").as_uri(), "rest_port": 0}
        )
    )
    result = run_cli("jobmaster", "--config", str(config), env=clean_env(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.error_lines) == 1 and JOB_SECRET_ENV in result.error_lines[0], result.stderr
