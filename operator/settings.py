"""Operator settings, read once from the command line (``main``) and passed down explicitly.

Frozen; ``handlers`` stores them in kopf's memo at start-up; ``controller`` reads its intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs: scope, peering, intervals, endpoints."""

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
