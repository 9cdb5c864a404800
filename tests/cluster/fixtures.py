"""pytest fixtures of the e2e test bed: a real Kubernetes API server, a node agent and Helm.

Registered as a plugin in the root ``conftest.py``. Fixtures:

- ``kube`` (session): a :class:`Kube` — kubeconfig path, the official client's ``ApiClient``, a raw
  dict client, ``kubectl``, and wait helpers. Starts the test bed's control plane (built by
  ``tests/cluster/build.sh`` and cached outside the repo) unless ``STREAMJOB_E2E_KUBECONFIG`` names a
  cluster, or ``KUBECONFIG``'s current context is a ``kind-*`` cluster, which is then used instead.
- ``kube_namespace`` (function): a fresh namespace (its ``default`` ServiceAccount exists), deleted
  after the test.
- ``node_agent`` (session): the :class:`~tests.cluster.node_agent.NodeAgent` that runs pods as local
  processes (pod IPs, logs, crash injection). Test-bed only: skips on a real cluster.
- ``pod_runtime`` (session): whatever runs pods — the node agent on the bed, ``None`` on a real cluster.
- ``helm`` (session): a :class:`~tests.cluster.helm.Helm` for the same cluster.

When the control plane cannot be built or started the requesting test fails under ``CI=true`` and is
skipped with the reason otherwise. Logs stay in pytest's temporary directory; a failed test's report
lists the control plane's and its pods' log paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tests.cluster.controlplane import ControlPlane, TestbedUnavailable, build
from tests.cluster.helm import Helm
from tests.cluster.kubeapi import KubeApi, KubeError, pod_path
from tests.cluster.node_agent import NodeAgent
from tests.support.s3server import fail_or_skip

T = TypeVar("T")
Json = dict[str, Any]
LOGS_KEY = pytest.StashKey[dict[str, Path]]()
NAMESPACE_KEY = pytest.StashKey[str]()
BUILDS_KEY = pytest.StashKey[dict[str, "Path | TestbedUnavailable"]]()
# The fixtures that need each binary (directly or through ``kube``).
NEEDS = {"controlplane": {"kube", "kube_namespace", "node_agent", "pod_runtime", "helm"}, "helm": {"helm"}}


def _kubectl_binary() -> str:
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    return shutil.which("kubectl") or "kubectl"


@dataclass
class Kube:
    """A Kubernetes cluster for tests: the bed's own control plane or an external (kind) cluster."""

    kubeconfig: Path
    api: k8s_client.ApiClient
    raw: KubeApi
    external: bool
    logs: Path | None = None
    _core: k8s_client.CoreV1Api | None = field(default=None, repr=False)

    @property
    def core(self) -> k8s_client.CoreV1Api:
        if self._core is None:
            self._core = k8s_client.CoreV1Api(self.api)
        return self._core

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``kubectl ARGS`` against this cluster."""
        result = subprocess.run(
            [_kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def apply(self, manifest: Json | list[Json] | str, namespace: str | None = None) -> str:
        """``kubectl apply`` of a dict, a list of dicts or YAML text; returns kubectl's output."""
        if isinstance(manifest, dict):
            text = yaml.safe_dump(manifest)
        elif isinstance(manifest, list):
            text = yaml.safe_dump_all(manifest)
        else:
            text = manifest
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=text).stdout

    def pod(self, namespace: str, name: str) -> Json:
        """The pod as a plain dict (raises ``KubeError`` 404 when it does not exist)."""
        return self.raw.get(pod_path(namespace, name))

    def create_pod(self, namespace: str, pod: Json) -> Json:
        return self.raw.create(pod_path(namespace), pod)

    def wait_for(
        self, check: Callable[[], T | None], timeout: float = 60.0, what: str = "condition", interval: float = 0.2
    ) -> T:
        """Polls ``check`` until it returns something truthy; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except KubeError as err:
                last = err
            time.sleep(interval)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else "")
        )

    def wait_pod_phase(self, namespace: str, name: str, *phases: str, timeout: float = 60.0) -> Json:
        """Waits until the pod is in one of ``phases``; returns the pod."""

        def check() -> Json | None:
            pod = self.pod(namespace, name)
            return pod if pod.get("status", {}).get("phase") in phases else None

        return self.wait_for(check, timeout, f"pod {namespace}/{name} to be {'/'.join(phases)}")

    def wait_gone(self, path: str, timeout: float = 60.0) -> None:
        """Waits until the object at the REST ``path`` no longer exists."""

        def check() -> bool:
            try:
                self.raw.get(path)
            except KubeError as err:
                if err.status == 404:
                    return True
                raise
            return False

        self.wait_for(check, timeout, f"{path} to be deleted")


def _external_kubeconfig() -> Path | None:
    """A real cluster to use instead of the bed: STREAMJOB_E2E_KUBECONFIG, or a kind context in KUBECONFIG."""
    explicit = os.environ.get("STREAMJOB_E2E_KUBECONFIG")
    if explicit:
        return Path(explicit)
    path = os.environ.get("KUBECONFIG")
    if not path or not Path(path).is_file():
        return None
    try:
        _, current = k8s_config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except Exception:
        return None
    cluster = str(current.get("context", {}).get("cluster", ""))
    return Path(path) if cluster.startswith("kind-") else None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the binaries the selected tests need before any test runs.

    A cold build takes longer than pytest's per-test timeout, so it must not happen inside a test's
    fixture setup. Failures are remembered and reported by the fixtures (fail under CI, else skip).
    """
    if session.config.option.collectonly:
        return
    used: set[str] = set()
    for item in session.items:
        used.update(getattr(item, "fixturenames", ()))
    targets = [target for target, fixtures in NEEDS.items() if used & fixtures]
    if _external_kubeconfig() is not None and "controlplane" in targets:
        targets.remove("controlplane")
    if not targets:
        return
    log_dir = session.config._tmp_path_factory.mktemp("testbed-build")  # type: ignore[attr-defined]
    builds: dict[str, Path | TestbedUnavailable] = {}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for target in targets:
        if reporter is not None:
            reporter.write_line(
                f"[testbed] building/finding {target} with tests/cluster/build.sh "
                f"(a cold build takes many minutes; log in {log_dir})"
            )
        try:
            builds[target] = build(target, log_dir)
        except TestbedUnavailable as err:
            builds[target] = err
    session.config.stash[BUILDS_KEY] = builds


def _binary(config: pytest.Config, target: str, log_dir: Path) -> Path:
    """The binary built at collection time, or built now (e.g. when the hook did not see the test)."""
    found = config.stash.get(BUILDS_KEY, {}).get(target)
    if isinstance(found, TestbedUnavailable):
        raise found
    return found if found is not None else build(target, log_dir)


def _logs(config: pytest.Config) -> dict[str, Path]:
    logs = config.stash.get(LOGS_KEY, None)
    if logs is None:
        logs = {}
        config.stash[LOGS_KEY] = logs
    return logs


@pytest.fixture(scope="session")
def testbed_root(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The session's directory for the control plane, the node agent and Helm.

    Outside pytest's rotating ``basetemp`` (which a concurrent pytest run may prune); removed at the
    end of a session in which no test failed, kept (and its path printed) otherwise or when
    ``STREAMJOB_TESTBED_KEEP=1``.
    """
    root = Path(tempfile.mkdtemp(prefix="streamjob-testbed-"))
    yield root
    if request.session.testsfailed == 0 and os.environ.get("STREAMJOB_TESTBED_KEEP") != "1":
        shutil.rmtree(root, ignore_errors=True)
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[testbed] logs kept in {root}")


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, testbed_root: Path) -> Iterator[Kube]:
    external = _external_kubeconfig()
    plane: ControlPlane | None = None
    logs: Path | None = None
    if external is not None:
        kubeconfig = external
    else:
        root = testbed_root
        try:
            binary = _binary(request.config, "controlplane", root / "build")
            plane = ControlPlane(binary, root / "controlplane")
            state = plane.start()
        except TestbedUnavailable as err:
            if plane is not None:
                plane.stop()
            fail_or_skip(f"the Kubernetes test bed is unavailable: {err}")
            raise  # unreachable: fail_or_skip raises
        kubeconfig, logs = state.kubeconfig, state.logs
        _logs(request.config)["control plane"] = logs
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    cluster = Kube(kubeconfig=kubeconfig, api=api, raw=KubeApi(str(kubeconfig)), external=plane is None, logs=logs)
    try:
        if plane is not None:
            cluster.wait_for(
                lambda: cluster.raw.get("/api/v1/namespaces/default/serviceaccounts/default"),
                60,
                "the default service account (kube-controller-manager)",
            )
        yield cluster
    finally:
        api.close()
        if plane is not None:
            plane.stop()


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest, kube: Kube) -> Iterator[str]:
    """A fresh namespace ``t-<hex>`` with its default ServiceAccount; deleted (not awaited) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.raw.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"streamjob.dev/e2e": "true"}}},
    )
    request.node.stash[NAMESPACE_KEY] = name
    kube.wait_for(
        lambda: kube.raw.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        60,
        f"the default service account of {name}",
    )
    yield name
    try:
        kube.raw.delete(f"/api/v1/namespaces/{name}")
    except KubeError:
        pass


@pytest.fixture(scope="session")
def node_agent(request: pytest.FixtureRequest, kube: Kube, testbed_root: Path) -> Iterator[NodeAgent]:
    if kube.external:
        pytest.skip("the node agent belongs to the test bed; a real cluster runs pods with its kubelets")
    agent = NodeAgent(kubeconfig=str(kube.kubeconfig), root=testbed_root / "node-agent")
    _logs(request.config)["node agent"] = agent.root
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="session")
def pod_runtime(request: pytest.FixtureRequest, kube: Kube) -> NodeAgent | None:
    """What runs pods: the node agent on the test bed, ``None`` (real kubelets) on a real cluster."""
    if kube.external:
        return None
    agent: NodeAgent = request.getfixturevalue("node_agent")
    return agent


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest, kube: Kube, testbed_root: Path) -> Helm:
    root = testbed_root / "helm"
    try:
        binary = _binary(request.config, "helm", root / "build")
    except TestbedUnavailable as err:
        fail_or_skip(f"helm is unavailable: {err}")
        raise
    return Helm(binary=binary, kubeconfig=kube.kubeconfig, home=root)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    logs = item.config.stash.get(LOGS_KEY, None)
    if not report.failed or not logs:
        return report
    lines = [f"{what}: {path}" for what, path in logs.items()]
    namespace = item.stash.get(NAMESPACE_KEY, None)
    agent_root = logs.get("node agent")
    if namespace and agent_root is not None:
        lines += [f"pod {pod.name}: {pod / 'logs'}" for pod in sorted((agent_root / "pods").glob(f"{namespace}_*"))]
    report.sections.append(("testbed logs", "\n".join(lines)))
    return report
