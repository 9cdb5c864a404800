"""Unit tests of how the fixtures choose a real cluster over the test bed (``_external_kubeconfig``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster.fixtures import _external_kubeconfig

pytestmark = pytest.mark.unit


def kubeconfig(path: Path, cluster: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": cluster, "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "u"}}],
                "current-context": cluster,
            }
        )
    )
    return path


def test_explicit_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMJOB_E2E_KUBECONFIG", str(tmp_path / "any"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert _external_kubeconfig() == tmp_path / "any"


def test_kubeconfig_is_used_only_for_kind_clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMJOB_E2E_KUBECONFIG", raising=False)
    kind = kubeconfig(tmp_path / "kind.yaml", "kind-streamjob-e2e")
    monkeypatch.setenv("KUBECONFIG", str(kind))
    assert _external_kubeconfig() == kind
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "prod.yaml", "production")))
    assert _external_kubeconfig() is None
    monkeypatch.delenv("KUBECONFIG")
    assert _external_kubeconfig() is None
