"""Operator settings, read once from the command line and environment (``main``) and passed down explicitly.

Frozen; ``handlers`` stores them in kopf's memo at start-up; ``controller`` reads its intervals,
the operator key (to derive each job's secret) and the ``SecurityPolicy`` (what job specs may ask
for, read by ``validation``; NetworkPolicy and Secret-reading choices, read by the controller).
The Helm chart sets the environment variables (``docs/security.md``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPERATOR_KEY_ENV = "STREAMJOB_OPERATOR_KEY"
REST_CA_FILE_ENV = "STREAMJOB_OPERATOR_REST_CA_FILE"
MIN_OPERATOR_KEY_CHARS = 32
#: The capabilities a job's containers may add without an operator value permitting more.
DEFAULT_ALLOWED_CAPABILITIES = ("NET_BIND_SERVICE",)


@dataclass(frozen=True)
class SecurityPolicy:
    """What the operator lets a StreamJob's pods do; each flag is a chart value under ``security.``.

    The defaults are safe: no hostPath, no privileged container or privilege escalation, no host
    namespaces, no root user, only ``NET_BIND_SERVICE`` added, only the namespace's ``default``
    service account; the operator lists checkpoints with its own storage credentials, never with a
    job's Secret; every job gets NetworkPolicies.
    """

    allow_host_path: bool = False
    allow_privileged: bool = False
    allow_host_namespaces: bool = False
    allow_run_as_root: bool = False
    allowed_capabilities: tuple[str, ...] = DEFAULT_ALLOWED_CAPABILITIES
    allowed_service_accounts: tuple[str, ...] = ()
    read_job_secrets: bool = False
    network_policy: bool = True
    #: Extra NetworkPolicy peers allowed to reach the JobMaster REST port (``networkPolicy.restFrom``).
    rest_from: tuple[dict[str, Any], ...] = ()
    #: The operator's own namespace: the JobMaster REST port accepts it (None: outside a cluster).
    operator_namespace: str | None = None


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs: scope, peering, intervals, endpoints, its key and security policy."""

    namespaces: tuple[str, ...] = ()
    clusterwide: bool = True
    peering_name: str | None = None
    priority: int | None = None
    kubeconfig: str | None = None
    metrics_port: int | None = 8080
    bind_address: str = "0.0.0.0"
    liveness_endpoint: str | None = None
    log_level: str = "INFO"
    poll_interval_s: float = 2.0
    busy_interval_s: float = 0.25
    jobmaster_timeout_s: float = 3.0
    error_backoff_s: float = 5.0
    operator_env: dict[str, str] = field(default_factory=dict)
    #: The secret every job secret is derived from (``STREAMJOB_OPERATOR_KEY``); never logged.
    operator_key: str = field(default="", repr=False)
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    #: CA file verifying the REST certificates of jobs with ``spec.tls.rest`` (``STREAMJOB_OPERATOR_REST_CA_FILE``).
    rest_ca_file: str | None = None
    #: How long the pods of a failed attempt are kept for ``kubectl logs`` (0: deleted at once).
    failed_pod_retention_s: float = 3600.0
    #: kopf's per-handler log lines at the operator's level (off: only kopf's warnings).
    verbose_handlers: bool = False


class SettingsError(ValueError):
    """A setting from the environment is missing or malformed; the message is one line for the user."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name}={env[name]!r} must be true or false")


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if name not in env:
        return default
    return tuple(part.strip() for part in env[name].split(",") if part.strip())


def _peers(env: Mapping[str, str], name: str) -> tuple[dict[str, Any], ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        peers = json.loads(raw)
    except ValueError as err:
        raise SettingsError(f"{name} is not JSON ({err}); give a list of NetworkPolicy peers") from err
    if not isinstance(peers, list) or not all(isinstance(p, dict) and p for p in peers):
        raise SettingsError(f"{name} must be a JSON list of NetworkPolicy peers (objects), got {raw[:80]!r}")
    return tuple(peers)


def security_from_env(env: Mapping[str, str]) -> SecurityPolicy:
    """The security policy the chart's values set through ``STREAMJOB_SECURITY_*`` and friends."""
    return SecurityPolicy(
        allow_host_path=_flag(env, "STREAMJOB_SECURITY_ALLOW_HOST_PATH", False),
        allow_privileged=_flag(env, "STREAMJOB_SECURITY_ALLOW_PRIVILEGED", False),
        allow_host_namespaces=_flag(env, "STREAMJOB_SECURITY_ALLOW_HOST_NAMESPACES", False),
        allow_run_as_root=_flag(env, "STREAMJOB_SECURITY_ALLOW_RUN_AS_ROOT", False),
        allowed_capabilities=_names(env, "STREAMJOB_SECURITY_ALLOWED_CAPABILITIES", DEFAULT_ALLOWED_CAPABILITIES),
        allowed_service_accounts=_names(env, "STREAMJOB_SECURITY_ALLOWED_SERVICE_ACCOUNTS", ()),
        read_job_secrets=_flag(env, "STREAMJOB_READ_JOB_SECRETS", False),
        network_policy=_flag(env, "STREAMJOB_NETWORK_POLICY", True),
        rest_from=_peers(env, "STREAMJOB_NETWORK_POLICY_REST_FROM"),
        operator_namespace=env.get("STREAMJOB_OPERATOR_NAMESPACE") or env.get("POD_NAMESPACE") or None,
    )


def operator_key_from_env(env: Mapping[str, str]) -> str:
    """The operator key; a one-line ``SettingsError`` when it is missing or too short."""
    key = env.get(OPERATOR_KEY_ENV, "").strip()
    if not key:
        raise SettingsError(
            f"{OPERATOR_KEY_ENV} is not set: the operator derives every job's secret from it. The Helm chart "
            "sets it from a Secret; elsewhere set it to a random string of at least "
            f"{MIN_OPERATOR_KEY_CHARS} characters (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if len(key) < MIN_OPERATOR_KEY_CHARS:
        raise SettingsError(
            f"{OPERATOR_KEY_ENV} holds {len(key)} characters; it needs at least {MIN_OPERATOR_KEY_CHARS}"
        )
    return key
