"""The file through which ``streamjob run`` hands its REST token to the user and the CLI.

``streamjob run`` (``local.py``) writes the token of each run to a file only its user can read
(``streamjob-<job>-<port>.token`` under ``$XDG_RUNTIME_DIR``, else the temp directory, or
``--rest-token-file``); ``streamjob savepoint``/``cancel`` (``rest_client.py``) read it from
``--token-file`` or, for a job on this machine, from that default place.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from streamjob.worker.errors import ConfigError

_JOB_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def token_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR`` (private to the user) when it is a directory, else the temp directory."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime)
    return Path(tempfile.gettempdir())


def default_token_path(job_name: str, port: int, environ: Mapping[str, str] | None = None) -> Path:
    """Where the run of ``job_name`` serving REST on ``port`` keeps its token by default."""
    if not _JOB_NAME.match(job_name) or len(job_name) > 253:
        raise ConfigError(f"{job_name!r} is not a job name (lower-case letters, digits, '-' and '.')")
    return token_dir(environ) / f"streamjob-{job_name}-{port}.token"


def write_token_file(path: Path, token: str) -> None:
    """Writes ``token`` to ``path`` readable by this user only (mode 0600).

    The token goes to a fresh file (``O_EXCL``) that then replaces ``path``: a file or link someone
    else left at ``path`` (a shared temp directory) is replaced, never written through.
    """
    directory = path.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise ConfigError(
            f"cannot write the REST token file {path} ({err.strerror}); choose another path with --rest-token-file"
        ) from err
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        os.replace(temp, path)
    except OSError as err:
        Path(temp).unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write the REST token file {path} ({err.strerror}); choose another path with --rest-token-file"
        ) from err


def read_token_file(path: Path) -> str:
    """The token in ``path``; ``ConfigError`` naming the file when it is unreadable or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"the REST token file {path} cannot be read ({err.strerror})") from err
    if not token:
        raise ConfigError(f"the REST token file {path} is empty")
    return token


def find_local_token(host: str, port: int, job_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The token of the local run serving ``host:port``, from its default file; None when there is none.

    Only for loopback addresses, and only a file owned by this user and unreadable to others (anyone
    can create files in a shared temp directory).
    """
    if host not in LOOPBACK_HOSTS:
        return None
    try:
        path = default_token_path(job_name, port, environ)
        info = path.stat()
    except (ConfigError, OSError):
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    try:
        return read_token_file(path)
    except ConfigError:
        return None
