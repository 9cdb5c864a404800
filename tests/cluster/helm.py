"""The Helm CLI of the test bed: runs the ``helm`` binary built from its pinned Go module.

Each :class:`Helm` has private cache/config/data homes, so tests never read or write a developer's
Helm settings, and talks to the cluster of the kubeconfig it is given.

Callers: ``tests/cluster/fixtures.py`` (the ``helm`` fixture) and the e2e tests through it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class HelmError(Exception):
    """A helm command exited non-zero; the message has its output."""


@dataclass(frozen=True)
class Helm:
    """Runs ``helm`` against one cluster: ``helm.run("lint", chart)``, ``helm.install(...)``."""

    binary: Path
    kubeconfig: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "HELM_CACHE_HOME": str(self.home / "cache"),
                "HELM_CONFIG_HOME": str(self.home / "config"),
                "HELM_DATA_HOME": str(self.home / "data"),
            }
        )
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Runs ``helm ARGS``; raises :class:`HelmError` with the output when ``check`` and it fails."""
        result = subprocess.run(
            [str(self.binary), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def lint(self, chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("lint", str(chart), *args)

    def install(self, release: str, chart: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``helm install RELEASE CHART -n NAMESPACE ARGS`` (add ``--wait`` or ``--set`` via ARGS)."""
        return self.run("install", release, str(chart), "--namespace", namespace, *args)

    def uninstall(self, release: str, namespace: str) -> subprocess.CompletedProcess[str]:
        return self.run("uninstall", release, "--namespace", namespace)
