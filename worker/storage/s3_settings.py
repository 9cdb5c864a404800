"""How to reach an S3-compatible server: endpoint, region, addressing style and credentials.

Read once (``S3Settings.from_env()``) by the CLI, the JobMaster, the workers and the operator, then
passed explicitly to ``open_store`` / ``CheckpointStorage``; ``s3_settings_for`` lays a job config's
non-secret overrides over the environment's (the JobMaster and the slots). Credentials left as None
fall back to boto3's default chain (instance profile, web identity, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from streamjob.worker.errors import ConfigError

ENDPOINT_ENV = "STREAMJOB_S3_ENDPOINT"
REGION_ENV = "STREAMJOB_S3_REGION"
PATH_STYLE_ENV = "STREAMJOB_S3_PATH_STYLE"
CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
DEFAULT_REGION = "us-east-1"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class S3Settings:
    """Connection settings for one S3-compatible endpoint (None endpoint = AWS)."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    path_style: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        """Reads ``STREAMJOB_S3_*`` and the standard ``AWS_*`` variables (``env`` defaults to os.environ)."""
        source = os.environ if env is None else env
        region = (
            source.get(REGION_ENV) or source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        )
        raw_style = source.get(PATH_STYLE_ENV, "").strip().lower()
        if raw_style in _TRUE:
            path_style = True
        elif raw_style in _FALSE:
            path_style = False
        else:
            raise ConfigError(f"{PATH_STYLE_ENV}={source.get(PATH_STYLE_ENV)!r} is not a boolean; use true or false")
        return cls(
            endpoint_url=source.get(ENDPOINT_ENV) or None,
            region=region,
            path_style=path_style,
            access_key_id=source.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=source.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=source.get("AWS_SESSION_TOKEN") or None,
        )

    @property
    def endpoint_label(self) -> str:
        """The endpoint as named in error messages."""
        return self.endpoint_url or f"AWS S3 ({self.region})"


class S3Overrides(Protocol):
    """The non-secret S3 settings a job config may set (``config.S3Options``); None keeps the environment's.

    A Protocol so that storage does not import the config (the config is above storage).
    """

    @property
    def endpoint_url(self) -> str | None: ...

    @property
    def region(self) -> str | None: ...

    @property
    def path_style(self) -> bool | None: ...


def s3_settings_for(overrides: S3Overrides, env: Mapping[str, str] | None = None) -> S3Settings:
    """The environment's S3 settings with a job config's non-secret overrides (``JobConfig.s3``)."""
    base = S3Settings.from_env(env)
    return replace(
        base,
        endpoint_url=overrides.endpoint_url or base.endpoint_url,
        region=overrides.region or base.region,
        path_style=base.path_style if overrides.path_style is None else overrides.path_style,
    )
