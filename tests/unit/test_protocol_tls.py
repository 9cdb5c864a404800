"""The TLS settings and context builders (``protocol/tls.py``) and the CLI's TLS flags (``cli_tls.py``).

Contexts are checked by what they do over real loopback sockets: mutual TLS lets a peer with a certificate
of the job's CA in and refuses one without a certificate or with another CA's; bad files are one-line
``ConfigError``s naming the field.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

import pytest

from streamjob.worker.cli_tls import add_client_tls_flags, add_run_tls_flags, rest_client_tls, run_tls_config
from streamjob.worker.config import TlsSettings, parse_job_config
from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol.handshake import HandshakeError
from streamjob.worker.protocol.tls import (
    CA_ENV,
    CERT_ENV,
    KEY_ENV,
    check_internal_pair,
    internal_client_context,
    internal_server_context,
    internal_tls_env,
    internal_tls_from_env,
    rest_client_context,
    rest_server_context,
    tls_mismatch_hint,
)
from tests.support.tls_certs import Pki, make_ca, make_cert

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    return make_cert(root / "job", make_ca(root / "ca"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A certificate of another CA (another job's, say)."""
    root = tmp_path_factory.mktemp("other")
    return make_cert(root / "job", make_ca(root / "ca", "another-ca"))


def settings(p: Pki, **changes: str) -> TlsSettings:
    return TlsSettings(cert_file=str(p.cert), key_file=str(p.key), ca_file=str(p.ca)).model_copy(update=changes)


async def exchange(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    """One echo over loopback with these contexts; raises what the client sees when TLS fails."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(4))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(b"ping")
        await writer.drain()
        data = await reader.read(4)
        writer.close()
        return data
    finally:
        srv.close()


def echo(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    return asyncio.run(asyncio.wait_for(exchange(server, client), 20))


def refused(server: ssl.SSLContext, client: ssl.SSLContext) -> bool:
    """Whether the server refuses the client: with TLS 1.3 the client may learn it only as a closed stream."""
    try:
        return echo(server, client) != b"ping"
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True


def test_internal_contexts_are_mutual_tls_of_the_jobs_ca(pki: Pki, stranger: Pki) -> None:
    server = internal_server_context(settings(pki))
    assert server.verify_mode == ssl.CERT_REQUIRED and server.minimum_version == ssl.TLSVersion.TLSv1_2
    client = internal_client_context(settings(pki))
    assert client.verify_mode == ssl.CERT_REQUIRED and not client.check_hostname
    assert echo(server, client) == b"ping"

    anonymous = ssl.create_default_context(cafile=str(pki.ca))  # trusts the server, shows no certificate
    anonymous.check_hostname = False
    assert refused(server, anonymous)
    assert refused(server, internal_client_context(settings(stranger, ca_file=str(pki.ca))))  # another CA's
    with pytest.raises(ssl.SSLCertVerificationError):  # a server of another CA is not trusted by a slot
        echo(internal_server_context(settings(stranger, ca_file=str(pki.ca))), client)


def test_rest_contexts_ask_for_a_client_certificate_only_when_told(pki: Pki) -> None:
    optional = rest_server_context(settings(pki))
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    plain_client = rest_client_context(str(pki.ca))
    assert plain_client.check_hostname and plain_client.verify_mode == ssl.CERT_REQUIRED
    assert echo(optional, rest_client_context(str(pki.ca), check_hostname=False)) == b"ping"

    required = rest_server_context(settings(pki).model_copy(update={"rest_client_auth": True}))
    assert required.verify_mode == ssl.CERT_REQUIRED
    assert refused(required, rest_client_context(str(pki.ca), check_hostname=False))
    with_cert = rest_client_context(str(pki.ca), cert_file=str(pki.cert), key_file=str(pki.key), check_hostname=False)
    assert echo(required, with_cert) == b"ping"


def test_bad_files_are_one_line_errors_naming_the_field(pki: Pki, stranger: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.crt")
    with pytest.raises(ConfigError, match=r"^internal_tls\.cert_file: cannot read .*nope\.crt") as err:
        internal_server_context(settings(pki, cert_file=missing))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^internal_tls\.key_file: cannot read"):
        internal_client_context(settings(pki, key_file=missing))
    with pytest.raises(ConfigError, match=r"^rest_tls\.ca_file: cannot read"):
        rest_server_context(settings(pki, ca_file=missing))
    with pytest.raises(
        ConfigError,
        match=r"^internal_tls\.cert_file/internal_tls\.key_file: .* not a PEM certificate "
        r"and its private key",
    ):
        internal_server_context(settings(pki, key_file=str(stranger.key)))  # a key of another certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^internal_tls\.ca_file: .* holds no PEM CA certificate"):
        internal_server_context(settings(pki, ca_file=str(garbage)))
    with pytest.raises(ConfigError, match=r"^--cacert: cannot read"):
        rest_client_context(missing)
    with pytest.raises(ConfigError, match="--cert and --key go together"):
        rest_client_context(str(pki.ca), cert_file=str(pki.cert))


def test_slots_get_the_files_by_environment_all_three_or_none(pki: Pki) -> None:
    assert internal_tls_from_env({}) is None
    assert internal_tls_env(None) == {}  # no TLS: the slots' environment is unchanged
    env = internal_tls_env(settings(pki))
    assert env == {CERT_ENV: str(pki.cert), KEY_ENV: str(pki.key), CA_ENV: str(pki.ca)}
    assert internal_tls_from_env(env) == settings(pki)
    with pytest.raises(ConfigError, match=f"^{KEY_ENV}, {CA_ENV} not set"):
        internal_tls_from_env({CERT_ENV: str(pki.cert)})


def test_job_config_has_tls_off_by_default_and_takes_the_settings(pki: Pki) -> None:
    base = {"name": "j", "entrypoint": "x.py"}
    config = parse_job_config(base, source="test")
    assert config.internal_tls is None and config.rest_tls is None
    tls = {"cert_file": str(pki.cert), "key_file": str(pki.key), "ca_file": str(pki.ca)}
    config = parse_job_config(
        {**base, "internal_tls": tls, "rest_tls": {**tls, "rest_client_auth": True}}, source="test"
    )
    assert config.internal_tls == settings(pki) and config.rest_tls is not None and config.rest_tls.rest_client_auth
    with pytest.raises(ConfigError, match="internal_tls"):
        parse_job_config({**base, "internal_tls": {"cert_file": "a"}}, source="test")
    assert TlsSettings.from_dir("/etc/streamjob/tls") == TlsSettings(
        cert_file="/etc/streamjob/tls/tls.crt",
        key_file="/etc/streamjob/tls/tls.key",
        ca_file="/etc/streamjob/tls/ca.crt",
    )


def parse(argv: list[str], add: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)  # type: ignore[operator]
    return parser.parse_args(argv)


def test_run_flags_all_three_files_per_plane(pki: Pki) -> None:
    assert run_tls_config(parse([], add_run_tls_flags)) == {}
    args = parse(
        ["--internal-tls-cert", str(pki.cert), "--internal-tls-key", str(pki.key), "--internal-tls-ca", str(pki.ca)],
        add_run_tls_flags,
    )
    assert run_tls_config(args) == {
        "internal_tls": {"cert_file": str(pki.cert), "key_file": str(pki.key), "ca_file": str(pki.ca)}
    }
    with pytest.raises(ConfigError, match=r"^--rest-tls-key, --rest-tls-ca missing"):
        run_tls_config(parse(["--rest-tls-cert", str(pki.cert)], add_run_tls_flags))
    with pytest.raises(ConfigError, match=r"^--rest-tls-client-auth needs"):
        run_tls_config(parse(["--rest-tls-client-auth"], add_run_tls_flags))


def test_client_flags(pki: Pki) -> None:
    assert rest_client_tls(parse([], add_client_tls_flags)) is None
    assert isinstance(rest_client_tls(parse(["--cacert", str(pki.ca)], add_client_tls_flags)), ssl.SSLContext)
    with pytest.raises(ConfigError, match=r"^--cert/--key need --cacert"):
        rest_client_tls(parse(["--cert", str(pki.cert), "--key", str(pki.key)], add_client_tls_flags))


def test_the_self_check_refuses_a_certificate_its_own_ca_does_not_accept(pki: Pki, stranger: Pki) -> None:
    check_internal_pair(settings(pki))
    with pytest.raises(ConfigError, match=r"^internal_tls: the certificate in .* is not accepted by the CA in"):
        check_internal_pair(settings(stranger, ca_file=str(pki.ca)))


def test_a_tls_mismatch_on_the_control_port_is_named() -> None:
    """Each side of a TLS mismatch gets a hint naming the variables; other failures get none."""
    silent = HandshakeError("no handshake answer within 30 s", before_challenge=True)
    dropped = HandshakeError("the server closed the connection before its challenge (busy)", before_challenge=True)
    assert CERT_ENV in tls_mismatch_hint(silent, tls_on=False)
    assert "uses internal TLS" in tls_mismatch_hint(dropped, tls_on=False)
    assert tls_mismatch_hint(silent, tls_on=True) == ""
    assert "same internal TLS settings" in tls_mismatch_hint(ssl.SSLError(1, "wrong version number"), tls_on=True)
    assert tls_mismatch_hint(ssl.SSLError(1, "wrong version number"), tls_on=False) == ""
    assert tls_mismatch_hint(ConnectionRefusedError(111, "refused"), tls_on=False) == ""
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert tls_mismatch_hint(verify, tls_on=True) == ""
