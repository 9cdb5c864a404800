"""Job secrets, derived REST tokens and nonce proofs."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol import auth

pytestmark = pytest.mark.unit

SECRET = "ab" * 32


def test_secret_from_env_or_file(tmp_path: Path) -> None:
    assert auth.load_job_secret({}) is None
    assert auth.load_job_secret({auth.JOB_SECRET_ENV: SECRET}) == SECRET
    f = tmp_path / "s"
    f.write_text(SECRET + "\n")
    assert auth.load_job_secret({auth.JOB_SECRET_FILE_ENV: str(f)}) == SECRET


def test_short_or_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        auth.load_job_secret({auth.JOB_SECRET_ENV: "short"})
    with pytest.raises(ConfigError, match="cannot be read"):
        auth.load_job_secret({auth.JOB_SECRET_FILE_ENV: str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match=auth.JOB_SECRET_ENV):
        auth.require_job_secret({})


def test_rest_token_is_derived_and_not_the_secret() -> None:
    token = auth.derive_rest_token(SECRET)
    assert token != SECRET and len(token) == 64
    assert token == auth.derive_rest_token(SECRET)
    assert token != auth.derive_rest_token("cd" * 32)
    assert auth.tokens_equal(token, token)
    assert not auth.tokens_equal(None, token)
    assert not auth.tokens_equal("x" * 64, token)


def test_proof_binds_secret_label_and_nonce() -> None:
    nonce = auth.new_nonce()
    proof = auth.prove(SECRET, "control", nonce)
    assert auth.verify(SECRET, "control", nonce, proof)
    assert not auth.verify(SECRET, "data", nonce, proof)
    assert not auth.verify(SECRET, "control", auth.new_nonce(), proof)
    assert not auth.verify("cd" * 32, "control", nonce, proof)
