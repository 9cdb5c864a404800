"""``streamjob-operator``: parses flags into ``OperatorConfig`` and runs kopf with ``handlers``.

Watches all namespaces by default (or ``--namespace`` ones); with ``--peering NAME`` several
replicas elect one active through kopf peering (the chart creates the peering object). The
operator key (``STREAMJOB_OPERATOR_KEY``) and the security policy come from the environment; a
missing key or a malformed value stops the start with a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import sys
from collections.abc import Mapping, Sequence

import kopf

from streamjob.operator.jobmaster_client import operator_rest_tls
from streamjob.operator.settings import (
    REST_CA_FILE_ENV,
    OperatorConfig,
    SettingsError,
    operator_key_from_env,
    security_from_env,
)
from streamjob.worker.errors import ConfigError


def _env_port(env: Mapping[str, str], name: str, default: str) -> int:
    """A port from the environment, or a one-line error naming the variable and the usual cause."""
    value = env.get(name, default)
    if not value.isdigit():
        service = name.removesuffix("_PORT").lower().replace("_", "-")
        raise SystemExit(
            f"streamjob-operator: {name}={value!r} is not a port number; a Service named {service!r} in the "
            "operator's namespace sets it unless the pod has enableServiceLinks: false (the Helm chart sets it)"
        )
    return int(value)


def parse_args(argv: Sequence[str] | None = None) -> OperatorConfig:
    """The settings named by the command line (environment variables give defaults)."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="streamjob-operator", description="Runs the StreamJob operator.")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[n for n in env.get("STREAMJOB_NAMESPACES", "").split(",") if n],
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    parser.add_argument("--peering", default=env.get("STREAMJOB_PEERING") or None, help="kopf peering name")
    parser.add_argument("--priority", type=int, default=None, help="peering priority (default: random)")
    parser.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    parser.add_argument("--metrics-port", type=int, default=_env_port(env, "STREAMJOB_METRICS_PORT", "8080"))
    parser.add_argument("--liveness-port", type=int, default=None, help="serve /healthz on this port")
    parser.add_argument(
        "--bind-address",
        default=env.get("STREAMJOB_BIND_ADDRESS") or "0.0.0.0",
        help="address the /healthz and metrics servers listen on (default 0.0.0.0; the pod IP when pods "
        "share a network namespace)",
    )
    parser.add_argument("--log-level", default=env.get("STREAMJOB_LOG_LEVEL", "INFO"))
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then ~/.kube)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between rounds when idle")
    parser.add_argument(
        "--failed-pod-retention",
        type=float,
        default=float(env.get("STREAMJOB_FAILED_POD_RETENTION_SECONDS", "3600")),
        help="seconds the pods of a failed attempt are kept for `kubectl logs` (default 3600; 0: delete at once)",
    )
    parser.add_argument(
        "--verbose-handlers",
        action="store_true",
        default=env.get("STREAMJOB_VERBOSE_HANDLERS", "").lower() in ("1", "true", "yes"),
        help="log kopf's per-handler lines at the operator's level (default: only its warnings)",
    )
    args = parser.parse_args(argv)
    if args.failed_pod_retention < 0:
        parser.error(f"--failed-pod-retention must be >= 0 seconds, got {args.failed_pod_retention:g}")
    peering = None if args.standalone else args.peering
    priority = args.priority if args.priority is not None else random.randint(1, 1_000_000)
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        clusterwide=not args.namespace,
        peering_name=peering,
        priority=priority,
        kubeconfig=args.kubeconfig,
        metrics_port=args.metrics_port or None,
        bind_address=args.bind_address,
        liveness_endpoint=f"http://{args.bind_address}:{args.liveness_port}/healthz" if args.liveness_port else None,
        log_level=args.log_level.upper(),
        poll_interval_s=args.poll_interval,
        failed_pod_retention_s=args.failed_pod_retention,
        verbose_handlers=args.verbose_handlers,
    )


def with_environment(config: OperatorConfig, env: Mapping[str, str]) -> OperatorConfig:
    """``config`` with the operator key and the security policy read from ``env`` (``SettingsError``)."""
    config = dataclasses.replace(
        config,
        operator_key=operator_key_from_env(env),
        security=security_from_env(env),
        rest_ca_file=env.get(REST_CA_FILE_ENV) or None,
    )
    try:
        operator_rest_tls(config)  # an unreadable CA file stops the start with one line
    except ConfigError as err:
        raise SettingsError(str(err)) from None
    return config


KOPF_PEERING_LOGGER = "kopf._core.engines.peering"


def quiet_kopf(config: OperatorConfig) -> None:
    """Silences kopf: it logs every handler run and every round at INFO; only its warnings show unless asked otherwise.

    The operator's own lines (transitions, failures: ``events``) stay at the chosen level, and so do
    kopf's peering lines ("Pausing operations in favour of ...", "Resuming operations ..."): with several
    replicas they are how an operator tells which one is active.
    """
    if not config.verbose_handlers and config.log_level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger(KOPF_PEERING_LOGGER).setLevel(config.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the operator until it is stopped."""
    config = parse_args(argv)
    try:
        config = with_environment(config, os.environ)
    except SettingsError as err:
        print(f"streamjob-operator: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_kopf(config)
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig  # kopf's own login reads it too
    import streamjob.operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        standalone=config.peering_name is None,
        peering_name=config.peering_name,
        priority=config.priority,
        liveness_endpoint=config.liveness_endpoint,
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
