"""A real ``streamjob run`` at parallelism 2 with mutual TLS on the internal planes and HTTPS on the REST API.

The job completes with exactly its output; the control and data ports say nothing to a plain TCP client
(no handshake bytes: TLS comes first), refuse a TLS client without a certificate of the job's CA, and
give a certificate holder only the HMAC challenge (the job secret is still needed); the REST API is
https only, ``streamjob savepoint --cacert`` takes a savepoint over it, and a client that does not trust
the CA gets one line saying to pass ``--cacert``. The same in Kubernetes mode (``streamjob jobmaster`` with
job.json, ``streamjob worker`` with ``STREAMJOB_INTERNAL_TLS_*``), REST client certificates when required,
and a certificate its own CA does not accept refused at start.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

from streamjob.worker.config import TlsSettings
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, new_job_secret
from streamjob.worker.protocol.tls import CA_ENV, CERT_ENV, KEY_ENV, internal_client_context, rest_client_context
from streamjob.worker.testing import LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM
from tests.support.tls_certs import Pki, make_ca, make_cert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HEADER = struct.Struct(">IBIII")  # the frame header of protocol/framing.py


def address(value: str | list[Any]) -> tuple[str, int]:
    if isinstance(value, list):
        return str(value[0]), int(value[1])
    host, _, port = value.rpartition(":")
    return host, int(port)


def says_nothing_in_plain_tcp(target: tuple[str, int], send: bytes = b"") -> None:
    """A plain TCP client (silent, or speaking the framing in clear) gets no frame before the port closes it."""
    with socket.create_connection(target, timeout=10) as sock:
        if send:
            sock.sendall(send)
        sock.settimeout(20)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    # at most a TLS alert record (content type 21), never a challenge frame (which starts with its length)
    assert received == b"" or received[0] == 21, f"{target} spoke in plain TCP: {received[:60]!r}"


def tls_refused(target: tuple[str, int], context: ssl.SSLContext) -> bool:
    """Whether a TLS client with ``context`` is refused before it hears anything of the internal protocol."""
    try:
        with (
            socket.create_connection(target, timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.settimeout(20)
            return sock.recv(65536) == b""  # TLS 1.3: the refusal comes after the client's side of the handshake
    except (ssl.SSLError, ConnectionError):
        return True


def challenge_over_tls(target: tuple[str, int], context: ssl.SSLContext) -> dict[str, Any]:
    """With a certificate of the job's CA, the port speaks: the HMAC challenge, as without TLS."""
    with socket.create_connection(target, timeout=10) as raw, context.wrap_socket(raw) as sock:
        sock.settimeout(20)
        data = b""
        while len(data) < HEADER.size or len(data) < 4 + HEADER.unpack(data[: HEADER.size])[0]:
            chunk = sock.recv(65536)
            assert chunk, f"{target} closed before its challenge"
            data += chunk
        length = HEADER.unpack(data[: HEADER.size])[0]  # counts the bytes after the length field
        challenge: dict[str, Any] = msgpack.unpackb(data[HEADER.size : 4 + length])
        return challenge


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    """The job's certificate (internal and REST) and one of another CA."""
    root = tmp_path_factory.mktemp("pki")
    return make_cert(root / "job", make_ca(root / "ca")), make_cert(root / "other", make_ca(root / "other-ca", "x"))


def tls_flags(p: Pki) -> list[str]:
    return [
        *("--internal-tls-cert", str(p.cert), "--internal-tls-key", str(p.key), "--internal-tls-ca", str(p.ca)),
        *("--rest-tls-cert", str(p.cert), "--rest-tls-key", str(p.key), "--rest-tls-ca", str(p.ca)),
    ]


def test_a_job_with_internal_and_rest_tls(tmp_path: Path, pki: tuple[Pki, Pki]) -> None:
    job_pki, other = pki
    count = 40_000
    out = (tmp_path / "out").as_uri()
    checkpoints = (tmp_path / "checkpoints").as_uri()
    rest_ctx = rest_client_context(str(job_pki.ca))
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={count}",
        "rate=1500",
        parallelism=2,
        checkpoint_dir=checkpoints,
        options=tls_flags(job_pki),
        rest_tls=rest_ctx,
    ) as job:
        assert job.rest_url.startswith("https://127.0.0.1:")
        job.wait_for_checkpoints(1)
        info = job.job()
        assert info["state"] == "RUNNING" and len(info["workers"]) == 2, info
        control = address(info["control_address"])
        data = address(next(w for w in info["workers"] if w["slot"] == 0)["address"])

        for target in (control, data):
            says_nothing_in_plain_tcp(target)
            says_nothing_in_plain_tcp(target, HEADER.pack(13 + 3, 0, 0, 0, 0) + b"abc")
            anonymous = ssl.create_default_context(cafile=str(job_pki.ca))  # trusts the server, has no certificate
            anonymous.check_hostname = False
            assert tls_refused(target, anonymous), target
            strangers = TlsSettings(cert_file=str(other.cert), key_file=str(other.key), ca_file=str(job_pki.ca))
            assert tls_refused(target, internal_client_context(strangers)), target  # another CA's certificate
            mine = internal_client_context(TlsSettings.from_dir(job_pki.directory))
            assert challenge_over_tls(target, mine)["t"] == "challenge"

        # the REST API is https only
        plain = job.rest_url.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"{plain}/job", timeout=10)
        untrusting = run_cli("savepoint", "--jobmaster", job.rest_url, "--token-file", str(job.rest_token_file))
        assert untrusting.returncode != 0
        assert len(untrusting.error_lines) == 1 and "--cacert" in untrusting.stderr, untrusting.stderr
        result = run_cli("savepoint", "--jobmaster", job.rest_url, "--cacert", str(job_pki.ca), "--timeout", "90s")
        assert result.returncode == 0, result.stderr
        savepoint = result.stdout.strip()
        assert re.search(r"savepoint-[\w-]+$", savepoint), result.stdout
        assert (Path(savepoint.removeprefix("file://")) / "_metadata").exists()

        info = job.job()
        assert info["state"] == "RUNNING" and info["restarts"] == 0, info
        assert job.wait(timeout=240) == 0, job.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), count)
    assert problem is None, problem
    assert "Traceback" not in job.output()


def test_slots_refuse_a_jobmaster_of_another_ca(tmp_path: Path, pki: tuple[Pki, Pki]) -> None:
    """A certificate its own CA does not accept fails the run at start with one line, not a restart loop."""
    job_pki, other = pki
    flags = [
        "--internal-tls-cert",
        str(other.cert),
        "--internal-tls-key",
        str(other.key),
        "--internal-tls-ca",
        str(job_pki.ca),
    ]  # the JobMaster's certificate is not of the CA the slots trust
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "-p",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "c"),
        *flags,
        KEYED_SUM,
        f"out={(tmp_path / 'out').as_uri()}",
        "count=10",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.error_lines == [
        f"error: internal_tls: the certificate in '{other.cert}' is not accepted by the CA in '{job_pki.ca}' "
        "(CERTIFICATE_VERIFY_FAILED); the job's processes would refuse each other: give a certificate of that CA"
    ], result.stderr


def test_rest_client_certificates_when_required(tmp_path: Path, pki: tuple[Pki, Pki]) -> None:
    """``--rest-tls-client-auth``: ``streamjob cancel`` needs ``--cert/--key`` of the CA besides the token."""
    job_pki, other = pki
    out = (tmp_path / "out").as_uri()
    client_ctx = rest_client_context(str(job_pki.ca), cert_file=str(job_pki.cert), key_file=str(job_pki.key))
    rest_only = [
        "--rest-tls-cert",
        str(job_pki.cert),
        "--rest-tls-key",
        str(job_pki.key),
        "--rest-tls-ca",
        str(job_pki.ca),
        "--rest-tls-client-auth",
    ]
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        "count=1000000",
        "rate=500",
        parallelism=1,
        checkpoint_dir=(tmp_path / "checkpoints").as_uri(),
        options=rest_only,
        rest_tls=client_ctx,
    ) as job:
        job.wait_for_running()
        token = ["--token-file", str(job.rest_token_file)]
        no_cert = run_cli("cancel", "--jobmaster", job.rest_url, "--cacert", str(job_pki.ca), *token)
        assert no_cert.returncode != 0 and len(no_cert.error_lines) == 1, no_cert.stderr
        assert "--cert/--key" in no_cert.stderr, no_cert.stderr  # the line says what to give
        wrong_ca = run_cli(
            "cancel",
            "--jobmaster",
            job.rest_url,
            "--cacert",
            str(job_pki.ca),
            "--cert",
            str(other.cert),
            "--key",
            str(other.key),
            *token,
        )
        assert wrong_ca.returncode != 0, wrong_ca.stderr
        assert job.job()["state"] == "RUNNING"
        result = run_cli(
            "cancel",
            "--jobmaster",
            job.rest_url,
            "--cacert",
            str(job_pki.ca),
            "--cert",
            str(job_pki.cert),
            "--key",
            str(job_pki.key),
            *token,
        )
        assert result.returncode == 0, result.stderr
        assert job.wait(timeout=120) == 0, job.describe()
    assert "job CANCELED" in job.output(), job.describe()


def test_kubernetes_mode_jobmaster_reads_job_json_and_workers_the_environment(
    tmp_path: Path, pki: tuple[Pki, Pki]
) -> None:
    """``streamjob jobmaster`` with ``internal_tls``/``rest_tls`` in job.json (the Secret's layout, as the operator
    renders it) and ``streamjob worker`` with ``STREAMJOB_INTERNAL_TLS_*``: the job completes with exact output."""
    job_pki, _ = pki
    count = 20_000
    out = (tmp_path / "out").as_uri()
    files = TlsSettings.from_dir(job_pki.directory).model_dump()
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "name": "tls-k8s",
                "entrypoint": KEYED_SUM,
                "args": [f"out={out}", f"count={count}", "rate=0"],
                "parallelism": 2,
                "checkpoints_uri": (tmp_path / "ck").as_uri(),
                "rest_host": "127.0.0.1",
                "rest_port": 0,
                "control_port": 0,
                "workers": 1,
                "slots_per_worker": 2,
                "internal_tls": files,
                "rest_tls": files,
            }
        )
    )
    env = {**os.environ, JOB_SECRET_ENV: new_job_secret()}
    for name in (CERT_ENV, KEY_ENV, CA_ENV):
        env.pop(name, None)
    jobmaster = subprocess.Popen(
        [sys.executable, "-m", "streamjob.worker.cli", "jobmaster", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    worker: subprocess.Popen[str] | None = None
    try:
        assert jobmaster.stdout is not None
        lines: list[str] = []
        found = None
        for line in jobmaster.stdout:
            lines.append(line)
            found = re.search(
                r"serving the REST API on 127\.0\.0\.1:(\d+) and the slots' control port on "
                r"127\.0\.0\.1:(\d+)",
                line,
            )
            if found:
                break
        assert found, "".join(lines)
        rest = f"https://127.0.0.1:{found.group(1)}"
        with urllib.request.urlopen(f"{rest}/job", timeout=10, context=rest_client_context(str(job_pki.ca))) as r:
            assert json.loads(r.read())["name"] == "tls-k8s"
        worker_command = [
            sys.executable,
            "-m",
            "streamjob.worker.cli",
            "worker",
            "--jobmaster",
            f"127.0.0.1:{found.group(2)}",
            "--slots",
            "2",
            "--data-host",
            "127.0.0.1",
        ]
        # A worker without the TLS files says why it cannot connect instead of retrying silently.
        worker = subprocess.Popen(worker_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        assert worker.stderr is not None
        said = worker.stderr.readline()
        worker.kill()
        worker.wait()
        assert "it uses internal TLS" in said and CERT_ENV in said, said
        worker_env = {**env, CERT_ENV: str(job_pki.cert), KEY_ENV: str(job_pki.key), CA_ENV: str(job_pki.ca)}
        worker = subprocess.Popen(
            worker_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=worker_env
        )
        assert jobmaster.wait(timeout=180) == 0, "".join(lines) + jobmaster.stdout.read()
    finally:
        for proc in (worker, jobmaster):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    problem = keyed_sum.check_exactly_once(read_committed(out), count)
    assert problem is None, problem
