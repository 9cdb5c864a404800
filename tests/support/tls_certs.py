"""Throwaway CAs and certificates for the TLS tests, made with the ``openssl`` CLI (no extra Python dependency).

``make_ca`` writes a self-signed CA; ``make_cert`` a key and a certificate it signs, usable as server and
as client (both extended key usages, SANs ``localhost`` and ``127.0.0.1``), as cert-manager issues them.
Under CI=true a missing ``openssl`` fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pki:
    """One directory in the layout of a Kubernetes TLS Secret: ``tls.crt``, ``tls.key``, ``ca.crt``."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the openssl CLI is needed to make test certificates")
        pytest.skip("the openssl CLI is needed to make test certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str = "streamjob-test-ca") -> tuple[Path, Path]:
    """A CA certificate and key in ``directory`` (``ca.crt``, ``ca.key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return directory / "ca.crt", directory / "ca.key"


def make_cert(directory: Path, ca: tuple[Path, Path], name: str = "streamjob-test") -> Pki:
    """A key and certificate signed by ``ca`` in ``directory``, with the CA certificate beside them."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = directory / "ext.cnf"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        f"/CN={name}",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        str(ext),
        cwd=directory,
    )
    shutil.copyfile(ca[0], directory / "ca.crt")
    return Pki(directory)


def make_pki(directory: Path) -> Pki:
    """A fresh CA and one certificate it signs, in ``directory``."""
    return make_cert(directory, make_ca(directory / "ca"))
