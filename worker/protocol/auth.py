"""Job secrets and the credentials derived from them.

Every job has one secret. ``streamjob run`` generates it per run; on Kubernetes the operator puts it
in a Secret per StreamJob that the JobMaster and worker pods receive as ``STREAMJOB_JOB_SECRET``
(a ``secretKeyRef``, never a ConfigMap). The secret itself only proves membership of the job's
internal planes (control registration, data-plane HELLO, by HMAC over a fresh nonce); the REST
bearer token is *derived* from it, so whoever may call the REST API cannot join the data plane.
Used by the JobMaster, the slots, the CLI and (for the derivation only) the operator.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from streamjob.worker.errors import ConfigError

JOB_SECRET_ENV = "STREAMJOB_JOB_SECRET"
"""The job's secret (hex), set for the JobMaster and every slot of the job."""
JOB_SECRET_FILE_ENV = "STREAMJOB_JOB_SECRET_FILE"
"""A file holding the job's secret, read when ``STREAMJOB_JOB_SECRET`` is not set."""
REST_TOKEN_ENV = "STREAMJOB_REST_TOKEN"
"""The bearer token clients (CLI, operator, test kit) send on mutating REST calls."""
REST_TOKEN_FILE_ENV = "STREAMJOB_REST_TOKEN_FILE"
"""A file holding the REST token, read when ``STREAMJOB_REST_TOKEN`` is not set."""

MIN_SECRET_CHARS = 32
_REST_LABEL = b"streamjob/rest-token/v1"


def new_job_secret() -> str:
    """A fresh 256-bit secret, hex-encoded."""
    return secrets.token_hex(32)


def _checked(value: str, source: str) -> str:
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{source} holds {len(value)} characters; a job secret needs at least {MIN_SECRET_CHARS} "
            "(generate one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return value


def load_job_secret(environ: Mapping[str, str] | None = None) -> str | None:
    """The job's secret from the environment (value or file), or None when neither is set."""
    env = os.environ if environ is None else environ
    if env.get(JOB_SECRET_ENV):
        return _checked(env[JOB_SECRET_ENV], JOB_SECRET_ENV)
    path = env.get(JOB_SECRET_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{JOB_SECRET_FILE_ENV}={path} cannot be read ({err.strerror})") from err
        return _checked(text, f"{JOB_SECRET_FILE_ENV}={path}")
    return None


def require_job_secret(environ: Mapping[str, str] | None = None) -> str:
    """The job's secret; a ``ConfigError`` naming both variables when it is missing."""
    found = load_job_secret(environ)
    if found is None:
        raise ConfigError(
            f"no job secret: set {JOB_SECRET_ENV} (or {JOB_SECRET_FILE_ENV} to a file holding it); "
            "on Kubernetes the operator sets it from the job's Secret"
        )
    return found


def derive_rest_token(job_secret: str) -> str:
    """The REST bearer token of a job: HMAC-SHA256(secret, label), hex."""
    return hmac.new(job_secret.encode(), _REST_LABEL, hashlib.sha256).hexdigest()


def load_rest_token(environ: Mapping[str, str] | None = None) -> str | None:
    """A client's REST token from the environment (value or file), or None."""
    env = os.environ if environ is None else environ
    if env.get(REST_TOKEN_ENV):
        return env[REST_TOKEN_ENV].strip()
    path = env.get(REST_TOKEN_FILE_ENV)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"{REST_TOKEN_FILE_ENV}={path} cannot be read ({err.strerror})") from err
    return None


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_nonce() -> bytes:
    """A 256-bit challenge for one handshake."""
    return secrets.token_bytes(32)


def prove(job_secret: str, label: str, nonce: bytes) -> bytes:
    """Proof of knowing the secret for one challenge: HMAC-SHA256(secret, label | nonce)."""
    return hmac.new(job_secret.encode(), label.encode() + b"\0" + nonce, hashlib.sha256).digest()


def verify(job_secret: str, label: str, nonce: bytes, proof: bytes) -> bool:
    """Whether ``proof`` answers the challenge ``nonce`` under ``label``; constant time."""
    return hmac.compare_digest(prove(job_secret, label, nonce), proof)
