"""kopf's login uses the same credentials as the operator's Kubernetes client (``--kubeconfig`` holds for both)."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from streamjob.operator.handlers import login
from streamjob.operator.k8s import kube_credentials
from streamjob.operator.settings import OperatorConfig

pytestmark = pytest.mark.unit

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: bed
  cluster: {server: "https://10.1.2.3:6443", insecure-skip-tls-verify: true}
users:
- name: op
  user: {token: "s3cr3t-token"}
contexts:
- name: bed
  context: {cluster: bed, user: op}
current-context: bed
"""


def test_a_token_kubeconfig_becomes_credentials(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    got = kube_credentials(str(path))
    assert (got.server, got.insecure, got.scheme, got.token) == (
        "https://10.1.2.3:6443",
        True,
        "Bearer",
        "s3cr3t-token",
    )
    assert (got.username, got.password, got.certificate_path, got.private_key_path) == (None, None, None, None)


def test_login_hands_them_to_kopf(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings = kopf.OperatorSettings()
    info = login(memo=kopf.Memo(config=OperatorConfig(kubeconfig=str(path))), settings=settings)
    assert isinstance(info, kopf.ConnectionInfo)
    assert (info.server, info.insecure, info.token, info.scheme) == (
        "https://10.1.2.3:6443",
        True,
        "s3cr3t-token",
        "Bearer",
    )
    assert info.trust_env == settings.networking.trust_env


def test_an_unreadable_kubeconfig_is_a_login_error(tmp_path: Path) -> None:
    with pytest.raises(kopf.LoginError, match="cannot load Kubernetes credentials"):
        login(
            memo=kopf.Memo(config=OperatorConfig(kubeconfig=str(tmp_path / "missing"))),
            settings=kopf.OperatorSettings(),
        )
