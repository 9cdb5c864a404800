"""Optional (mutual) TLS for the internal planes and the REST API: ``ssl.SSLContext`` builders.

Off unless configured (``JobConfig.internal_tls`` / ``rest_tls``: the files, ``config.TlsSettings``).
The internal planes (control port, data ports) use mutual TLS under the HMAC handshake of
``protocol.handshake``, which still binds a peer to the job: TLS adds confidentiality and refuses
peers without a certificate of the job's CA. Slot processes need the files before their Deploy
message, so they read them from the environment (``STREAMJOB_INTERNAL_TLS_CERT/KEY/CA``, set by
``jobmaster/launcher.py`` and by the operator's pods).
Used by ``jobmaster/control.py``, ``slot.py``, ``runtime/network.py``, ``jobmaster/rest.py``, the CLI,
``rest_client.py`` and the operator's JobMaster client. Pure apart from reading the named files.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from streamjob.worker.config import TlsSettings
from streamjob.worker.errors import ConfigError

CERT_ENV = "STREAMJOB_INTERNAL_TLS_CERT"
KEY_ENV = "STREAMJOB_INTERNAL_TLS_KEY"
CA_ENV = "STREAMJOB_INTERNAL_TLS_CA"
INTERNAL_TLS_ENVS = (CERT_ENV, KEY_ENV, CA_ENV)


def _readable(path: str, field: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise ConfigError(f"{field}: cannot read {path!r} ({err.strerror or err}); give a readable PEM file") from None


def _load_identity(ctx: ssl.SSLContext, settings: TlsSettings, field: str) -> None:
    _readable(settings.cert_file, f"{field}.cert_file")
    _readable(settings.key_file, f"{field}.key_file")
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except ssl.SSLError as err:
        raise ConfigError(
            f"{field}.cert_file/{field}.key_file: {settings.cert_file!r} and {settings.key_file!r} are not a PEM "
            f"certificate and its private key ({err.reason or err})"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca_file: str, field: str) -> None:
    _readable(ca_file, field)
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as err:
        raise ConfigError(f"{field}: {ca_file!r} holds no PEM CA certificate ({err.reason or err})") from None


def _base(purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def internal_server_context(settings: TlsSettings, field: str = "internal_tls") -> ssl.SSLContext:
    """Control and data listeners: present our certificate, require one of the job's CA from every peer."""
    ctx = _base(ssl.Purpose.CLIENT_AUTH)
    _load_identity(ctx, settings, field)
    _load_ca(ctx, settings.ca_file, f"{field}.ca_file")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def internal_client_context(settings: TlsSettings, field: str = "internal_tls") -> ssl.SSLContext:
    """Connections to the control port and to peers' data ports: present our certificate, verify the server's.

    The hostname is not checked: peers are addressed by pod IP (which certificates rarely name and
    which changes with every pod), the trust anchor is the job's own CA, and the HMAC handshake on
    top still proves the peer knows this job's secret.
    """
    ctx = _base(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    _load_identity(ctx, settings, field)
    _load_ca(ctx, settings.ca_file, f"{field}.ca_file")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def rest_server_context(settings: TlsSettings, field: str = "rest_tls") -> ssl.SSLContext:
    """The REST API: a client certificate of the CA is asked for, and required only with ``rest_client_auth``."""
    ctx = _base(ssl.Purpose.CLIENT_AUTH)
    _load_identity(ctx, settings, field)
    _load_ca(ctx, settings.ca_file, f"{field}.ca_file")
    ctx.verify_mode = ssl.CERT_REQUIRED if settings.rest_client_auth else ssl.CERT_OPTIONAL
    return ctx


def rest_client_context(
    ca_file: str,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
    check_hostname: bool = True,
    field: str = "--cacert",
) -> ssl.SSLContext:
    """A REST client verifying the JobMaster against ``ca_file`` (and presenting a certificate when given)."""
    ctx = _base(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = check_hostname
    _load_ca(ctx, ca_file, field)
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ConfigError("--cert and --key go together: give both (a client certificate and its key)")
        _load_identity(ctx, TlsSettings(cert_file=cert_file, key_file=key_file, ca_file=ca_file), "--cert/--key")
    return ctx


def check_internal_pair(settings: TlsSettings, field: str = "internal_tls") -> None:
    """Refuses, with one line, files whose certificate its own CA file would not accept.

    Every process of a job presents the same certificate and trusts the same CA, so such a job's slots
    would be refused by the JobMaster at every restart; an in-memory handshake finds it at start instead.
    """
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = internal_server_context(settings, field).wrap_bio(to_server, to_client, server_side=True)
    client = internal_client_context(settings, field).wrap_bio(
        to_client_in := ssl.MemoryBIO(), to_server_in := ssl.MemoryBIO()
    )

    def pump() -> None:
        to_server.write(to_server_in.read())
        to_client_in.write(to_client.read())

    pending = [client, server]
    try:
        for _ in range(8):
            for side in list(pending):
                try:
                    side.do_handshake()
                    pending.remove(side)
                except ssl.SSLWantReadError:
                    pass
            pump()
            if not pending:
                client.write(b"x")  # TLS 1.3: a refused client certificate shows when the server reads
                pump()
                server.read(1)
                return
    except ssl.SSLError as err:
        raise ConfigError(
            f"{field}: the certificate in {settings.cert_file!r} is not accepted by the CA in {settings.ca_file!r} "
            f"({err.reason or err}); the job's processes would refuse each other: give a certificate of that CA"
        ) from None
    raise ConfigError(f"{field}: the TLS self-check of {settings.cert_file!r} did not complete")


def internal_tls_from_env(environ: Mapping[str, str]) -> TlsSettings | None:
    """The internal TLS files a slot process was given, or ``None`` (all three variables or none)."""
    values = {name: environ.get(name, "") for name in INTERNAL_TLS_ENVS}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set: internal TLS needs {', '.join(INTERNAL_TLS_ENVS)} all set")
    return TlsSettings(cert_file=values[CERT_ENV], key_file=values[KEY_ENV], ca_file=values[CA_ENV])


def internal_tls_env(settings: TlsSettings | None) -> dict[str, str]:
    """The environment variables handing ``settings`` to slot processes (empty without TLS)."""
    if settings is None:
        return {}
    return {CERT_ENV: settings.cert_file, KEY_ENV: settings.key_file, CA_ENV: settings.ca_file}


def tls_mismatch_hint(err: BaseException, *, tls_on: bool) -> str:
    """What a failed connection to the control port says about the two sides' TLS settings, or "".

    A plain client facing a TLS listener connects and then hears nothing (the listener waits for a
    ClientHello); a TLS client facing a plain listener gets an SSL error or a closed socket during
    the TLS handshake. Either way the retry loop alone would only report "cannot reach" much later.
    """
    if tls_on and isinstance(err, ssl.SSLError) and not isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"this process uses internal TLS ({', '.join(INTERNAL_TLS_ENVS)} are set) and the TLS handshake "
            "failed: does the JobMaster run with the same internal TLS settings?"
        )
    if tls_on:
        return ""
    if "no handshake answer" in str(err):
        return (
            "the port accepts connections but sends no challenge, as a TLS listener does: if the JobMaster "
            f"uses internal TLS, give this process the same files ({', '.join(INTERNAL_TLS_ENVS)})"
        )
    if "before its challenge" in str(err):
        return (
            "the port closes connections before its challenge: the JobMaster is busy with other handshakes, "
            "or it uses internal TLS (it then drops a plain client after its TLS handshake timeout) and this "
            f"process needs the same files ({', '.join(INTERNAL_TLS_ENVS)})"
        )
    return ""
