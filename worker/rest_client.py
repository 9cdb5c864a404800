"""The CLI's calls to a JobMaster's REST API (``streamjob savepoint``/``cancel``), with the job's REST token.

The token comes from ``--token-file``, else ``STREAMJOB_REST_TOKEN``/``STREAMJOB_REST_TOKEN_FILE``, else,
for a job on this machine, the file its ``streamjob run`` wrote (found by the job's name from the open
``GET /job``). A refused call (401/403) becomes one line saying how to give the token. Answers are parsed
into the REST contract's models (``protocol/rest.py``); a body that is not one is one error line too.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.protocol.auth import REST_TOKEN_ENV, REST_TOKEN_FILE_ENV, load_rest_token
from streamjob.worker.protocol.rest import (
    CancelAccepted,
    CheckpointTriggered,
    JobOverview,
    SavepointRequestBody,
    SavepointTriggered,
    SavepointView,
)
from streamjob.worker.rest_token_file import find_local_token, read_token_file

B = TypeVar("B", bound=BaseModel)

GIVE_THE_TOKEN = (
    f"pass --token-file FILE or set {REST_TOKEN_ENV} (or {REST_TOKEN_FILE_ENV}); `streamjob run` prints where "
    "its token file is, on Kubernetes the token is in the job's Secret"
)


class RestRefused(StreamJobError):
    """The JobMaster refused the call for want of the right REST token."""


@dataclass(frozen=True)
class RestClient:
    """Calls to one JobMaster; ``token`` (with ``source`` saying where it came from) goes with each call."""

    base: str
    token: str | None = None
    source: str = ""
    tls: ssl.SSLContext | None = None
    """For ``https://`` bases: verifies the JobMaster (``protocol.tls.rest_client_context``); else the system CAs."""

    def job(self) -> JobOverview:
        """``GET /job``."""
        return self.parsed(JobOverview, "GET", "/job")

    def trigger_checkpoint(self) -> CheckpointTriggered:
        """``POST /checkpoints``."""
        return self.parsed(CheckpointTriggered, "POST", "/checkpoints", {})

    def trigger_savepoint(self, target: str | None, *, stop: bool) -> SavepointTriggered:
        """``POST /savepoints``."""
        body = SavepointRequestBody(target=target, stop=stop).model_dump(exclude={"request_key"})
        return self.parsed(SavepointTriggered, "POST", "/savepoints", body)

    def savepoint(self, request_id: str) -> SavepointView:
        """``GET /savepoints/<request_id>``."""
        return self.parsed(SavepointView, "GET", f"/savepoints/{request_id}")

    def cancel(self) -> CancelAccepted:
        """``POST /cancel``."""
        return self.parsed(CancelAccepted, "POST", "/cancel")

    def parsed(self, model: type[B], method: str, path: str, body: dict[str, Any] | None = None) -> B:
        """``call`` and its answer as ``model``; a body that is not one is a ``StreamJobError`` naming the field."""
        data = self.call(method, path, body)
        try:
            return model.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(body)"
            raise StreamJobError(
                f"{method} {self.base}{path} answered a body that is not a {model.__name__} ({where}: "
                f"{first['msg']}); is --jobmaster the REST URL of a streamjob JobMaster of this version?"
            ) from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; the decoded JSON body, or a ``StreamJobError`` with the JobMaster's message."""
        url = f"{self.base}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            message = _message(err)
            if err.code == 401:
                raise RestRefused(
                    f"{method} {url} needs the job's REST token and none was given: {GIVE_THE_TOKEN}"
                ) from None
            if err.code == 403 and "REST token" in message:  # a refused savepoint target is a 403 of its own
                raise RestRefused(
                    f"{method} {url}: the REST token from {self.source} is not this job's (every "
                    f"`streamjob run` makes a new one): {GIVE_THE_TOKEN}"
                ) from None
            raise StreamJobError(f"{method} {url}: {message}") from err
        except (urllib.error.URLError, OSError) as err:
            if isinstance(getattr(err, "reason", err), ssl.SSLError):
                raise StreamJobError(
                    f"{method} {url}: TLS failed ({getattr(err, 'reason', err)}); pass --cacert with the CA of the "
                    "job's REST certificate (and --cert/--key if the REST API requires client certificates)"
                ) from None
            tls_hint = (
                " (a REST API that requires client certificates closes the connection without one: pass --cert/--key)"
                if url.startswith("https://")
                else ""
            )
            raise StreamJobError(
                f"cannot reach the JobMaster at {url} ({getattr(err, 'reason', err)}); is the "
                f"job running and is --jobmaster its REST URL?{tls_hint}"
            ) from err


def _message(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("error", err.reason))
    except (json.JSONDecodeError, AttributeError, OSError):
        return str(err.reason)


def client_for(
    base: str, *, token_file: Path | None, environ: Mapping[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> RestClient:
    """A client for the JobMaster at ``base`` with the token found as the module docstring says."""
    if tls is not None and not base.startswith("https://"):
        raise ConfigError(f"--cacert/--cert/--key are for an https:// JobMaster URL, not {base}")
    if token_file is not None:
        return RestClient(base, read_token_file(token_file), f"--token-file {token_file}", tls)
    env = os.environ if environ is None else environ
    token = load_rest_token(env)
    if token:
        source = REST_TOKEN_ENV if env.get(REST_TOKEN_ENV) else f"{REST_TOKEN_FILE_ENV}={env.get(REST_TOKEN_FILE_ENV)}"
        return RestClient(base, token, source, tls)
    parts = urlsplit(base)
    anonymous = RestClient(base, tls=tls)
    if parts.hostname is None or parts.port is None:
        return anonymous
    try:
        name = anonymous.job().name
    except StreamJobError:
        return anonymous
    found = find_local_token(parts.hostname, parts.port, name, env)
    return RestClient(base, found, f"the token file of local job '{name}'", tls) if found else anonymous
