"""The REST token file of ``streamjob run`` and how the CLI finds a token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol.auth import REST_TOKEN_ENV, REST_TOKEN_FILE_ENV
from streamjob.worker.rest_client import client_for
from streamjob.worker.rest_token_file import (
    default_token_path,
    find_local_token,
    read_token_file,
    token_dir,
    write_token_file,
)

pytestmark = pytest.mark.unit


def test_the_default_place_is_the_runtime_dir_else_the_temp_dir(tmp_path: Path) -> None:
    assert token_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path
    assert token_dir({"XDG_RUNTIME_DIR": str(tmp_path / "absent")}) != tmp_path / "absent"
    path = default_token_path("my-job", 8081, {"XDG_RUNTIME_DIR": str(tmp_path)})
    assert path == tmp_path / "streamjob-my-job-8081.token"
    for bad in ("../x", "a/b", "", "UPPER", "-x"):
        with pytest.raises(ConfigError, match="is not a job name"):
            default_token_path(bad, 8081)


def test_the_token_file_is_private_and_replaces_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "t.token"
    path.write_text("old")
    path.chmod(0o644)
    write_token_file(path, "tok")
    assert read_token_file(path) == "tok"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["t.token"]  # no temp file left behind


def test_a_planted_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "t.token"
    link.symlink_to(victim)
    write_token_file(link, "tok")
    assert victim.read_text() == "keep"
    assert not link.is_symlink() and read_token_file(link) == "tok"


def test_an_unwritable_place_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot write the REST token file .*--rest-token-file"):
        write_token_file(tmp_path / "absent" / "t.token", "tok")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_token_file(tmp_path / "absent.token")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token_file(tmp_path / "empty")


def test_a_local_token_is_found_only_on_loopback_and_only_when_private(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    path = default_token_path("job", 9000, env)
    write_token_file(path, "tok")
    assert find_local_token("127.0.0.1", 9000, "job", env) == "tok"
    assert find_local_token("localhost", 9000, "job", env) == "tok"
    assert find_local_token("10.0.0.5", 9000, "job", env) is None
    assert find_local_token("127.0.0.1", 9001, "job", env) is None
    assert find_local_token("127.0.0.1", 9000, "../job", env) is None
    path.chmod(0o644)  # readable by others: not trusted
    assert find_local_token("127.0.0.1", 9000, "job", env) is None


def test_the_cli_takes_the_token_file_then_the_environment(tmp_path: Path) -> None:
    given = tmp_path / "given.token"
    given.write_text("from-file\n")
    env_file = tmp_path / "env.token"
    env_file.write_text("from-env-file")
    env = {REST_TOKEN_ENV: "from-env", REST_TOKEN_FILE_ENV: str(env_file)}
    assert client_for("http://127.0.0.1:1", token_file=given, environ=env).token == "from-file"
    assert client_for("http://127.0.0.1:1", token_file=None, environ=env).token == "from-env"
    only_file = {REST_TOKEN_FILE_ENV: str(env_file)}
    client = client_for("http://127.0.0.1:1", token_file=None, environ=only_file)
    assert (client.token, client.source) == ("from-env-file", f"{REST_TOKEN_FILE_ENV}={env_file}")
    # nothing given and no JobMaster to ask for its name: no token (the call then fails on its own)
    assert client_for("http://127.0.0.1:1", token_file=None, environ={}).token is None
    with pytest.raises(ConfigError, match="cannot be read"):
        client_for("http://127.0.0.1:1", token_file=tmp_path / "absent", environ={})
