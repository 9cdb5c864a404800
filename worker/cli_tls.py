"""The CLI's TLS flags: `streamjob run`'s internal/REST TLS files, the REST clients' `--cacert`/`--cert`/`--key`.

Kept apart from ``cli.py`` (which registers them) so that the flag rules live in one small place; the
contexts themselves are built by ``protocol/tls.py``.
"""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path
from typing import Any

from streamjob.worker.errors import ConfigError

_PLANES = {
    "internal": "mutual TLS on the control and data ports between the JobMaster and the worker processes",
    "rest": "HTTPS for the REST API",
}


def add_run_tls_flags(run: argparse.ArgumentParser) -> None:
    """``--internal-tls-cert/-key/-ca``, ``--rest-tls-cert/-key/-ca``, ``--rest-tls-client-auth``."""
    for plane, what in _PLANES.items():
        for part, text in (
            ("cert", "certificate chain (PEM)"),
            ("key", "private key (PEM)"),
            ("ca", "CA certificate (PEM) that signs the certificates"),
        ):
            run.add_argument(
                f"--{plane}-tls-{part}",
                type=Path,
                metavar="FILE",
                help=f"{what}: the {text}; give all three --{plane}-tls-* flags (default: off)",
            )
    run.add_argument(
        "--rest-tls-client-auth",
        action="store_true",
        help="require REST clients to present a certificate of --rest-tls-ca",
    )


def run_tls_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``internal_tls``/``rest_tls`` entries of the job config from ``run``'s flags (absent: TLS off)."""
    config: dict[str, Any] = {}
    for plane in _PLANES:
        files = {part: getattr(args, f"{plane}_tls_{part}") for part in ("cert", "key", "ca")}
        if not any(files.values()):
            continue
        missing = [f"--{plane}-tls-{part}" for part, path in files.items() if path is None]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} missing: {plane} TLS needs --{plane}-tls-cert, "
                f"--{plane}-tls-key and --{plane}-tls-ca"
            )
        config[f"{plane}_tls"] = {
            "cert_file": str(files["cert"].absolute()),
            "key_file": str(files["key"].absolute()),
            "ca_file": str(files["ca"].absolute()),
        }
    if args.rest_tls_client_auth:
        if "rest_tls" not in config:
            raise ConfigError("--rest-tls-client-auth needs --rest-tls-cert, --rest-tls-key and --rest-tls-ca")
        config["rest_tls"]["rest_client_auth"] = True
    return config


def add_client_tls_flags(command: argparse.ArgumentParser) -> None:
    """``--cacert``, ``--cert``, ``--key`` of ``savepoint``/``cancel``."""
    command.add_argument(
        "--cacert",
        type=Path,
        metavar="FILE",
        help="CA certificate (PEM) to verify an https:// JobMaster with (default: the system CAs)",
    )
    command.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="client certificate (PEM), when the REST API requires one (with --key)",
    )
    command.add_argument("--key", type=Path, metavar="FILE", help="private key (PEM) of --cert")


def rest_client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The context for ``--cacert``/``--cert``/``--key``; ``None``: plain HTTP or the system CAs."""
    from streamjob.worker.protocol.tls import rest_client_context

    if args.cacert is None:
        if args.cert or args.key:
            raise ConfigError("--cert/--key need --cacert FILE (the CA that signed the job's REST certificate)")
        return None
    return rest_client_context(
        str(args.cacert), cert_file=args.cert and str(args.cert), key_file=args.key and str(args.key)
    )
