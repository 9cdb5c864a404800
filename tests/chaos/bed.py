"""The chaos campaign's test bed: the e2e control plane and node agent, its own S3 server and operator.

``ChaosBed.standalone(root)`` starts everything (``python -m tests.chaos``); ``ChaosBed.on_fixtures``
uses the pytest session's control plane and node agent (``test_chaos.py``). Either way the bed owns
a SeaweedFS server (the S3 faults stop and freeze it, so it is never the session's shared one) and
runs ``streamjob-operator`` as a subprocess watching only the run's namespace, so the executor can
SIGKILL and restart it. Used by ``campaign`` and ``executor``.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.kubeapi import KubeApi
from tests.cluster.node_agent import NodeAgent
from tests.support.s3server import SeaweedServer

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
GROUP_PATH = "/apis/streamjob.dev/v1alpha1"
Log = Callable[[str], None]


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Polls ``check`` until it returns something truthy; TimeoutError names ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # a 404 while objects appear, a refused connection while a server restarts
            last = err
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(interval)


class OperatorProcess:
    """``streamjob-operator`` watching one namespace, as a subprocess the campaign may SIGKILL."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str]) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.namespace: str | None = None
        self.kills = 0
        # The operator derives every job's secret from its key: a restarted operator needs the same one.
        self.key = os.environ.get("STREAMJOB_OPERATOR_KEY") or secrets.token_hex(32)

    def start(self, namespace: str | None = None) -> None:
        self.namespace = namespace or self.namespace
        assert self.namespace is not None
        binary = Path(sys.executable).parent / "streamjob-operator"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAMJOB_OPERATOR_KEY": self.key, **self.env}
        with self.log_path.open("ab") as log:
            log.write(f"--- operator started at {time.strftime('%H:%M:%S')} ---\n".encode())
            self.proc = subprocess.Popen(
                [str(binary), "--kubeconfig", str(self.kubeconfig), "--standalone", "--metrics-port", "0",
                 "--poll-interval", "1", "--namespace", self.namespace],
                stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a node failure would: the operator's intent survives only in status."""
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class ChaosBed:
    """Control plane (API), node agent, S3 server and operator of a campaign."""

    def __init__(self, root: Path, api: KubeApi, kubeconfig: Path, agent: NodeAgent, log: Log) -> None:
        self.root = root
        self.api = api
        self.kubeconfig = kubeconfig
        self.agent = agent
        self.log = log
        self.s3 = SeaweedServer(root / "s3")
        # The operator reads storage with credentials of its own (it reads no job Secret by default).
        credentials = {"AWS_ACCESS_KEY_ID": self.s3.endpoint().access_key,
                       "AWS_SECRET_ACCESS_KEY": self.s3.endpoint().secret_key}  # fmt: skip
        self.operator = OperatorProcess(kubeconfig, root / "operator.log", credentials)
        self._owned: list[Any] = []
        self.s3_frozen = False

    @classmethod
    def standalone(cls, root: Path, log: Log) -> ChaosBed:
        """Starts the control plane (built or cached by ``tests/cluster/build.sh``) and a node agent."""
        from tests.cluster import images
        from tests.cluster.controlplane import ControlPlane, build

        root.mkdir(parents=True, exist_ok=True)
        log(f"chaos: starting the test bed in {root}")
        plane = ControlPlane(build("controlplane", root / "build"), root / "controlplane")
        state = plane.start()
        api = KubeApi(str(state.kubeconfig))
        try:
            wait_for(lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default"), 90, "service accounts")
            agent = NodeAgent(
                kubeconfig=str(state.kubeconfig), root=root / "node-agent", known_images=images.default_known()
            )
            agent.start()
        except BaseException:
            plane.stop()
            raise
        bed = cls(root, api, state.kubeconfig, agent, log)
        bed._owned = [agent, plane]
        bed._prepare()
        return bed

    @classmethod
    def on_fixtures(cls, root: Path, kubeconfig: Path, agent: NodeAgent, log: Log) -> ChaosBed:
        """Uses a running control plane and node agent (the pytest session's)."""
        bed = cls(root, KubeApi(str(kubeconfig)), kubeconfig, agent, log)
        bed._prepare()
        return bed

    def _prepare(self) -> None:
        self.s3.start()
        try:
            self.api.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(CRD_FILE.read_text())
            )
        except Exception as err:  # already there (an earlier test applied it)
            if "409" not in str(err) and "AlreadyExists" not in str(err):
                raise
        wait_for(lambda: self.api.get(GROUP_PATH), 30, "the streamjob.dev API")

    def stop(self) -> None:
        self.operator.stop()
        self.thaw_s3()
        for part in [self.s3, *self._owned]:
            try:
                part.stop()
            except Exception as err:  # best effort: the next part must still stop
                self.log(f"chaos: stopping {type(part).__name__} failed: {err}")

    # -- S3 faults ---------------------------------------------------------------------------------

    def freeze_s3(self) -> None:
        """SIGSTOP the S3 server: connections hang instead of being refused."""
        assert self.s3.proc is not None
        os.killpg(self.s3.proc.pid, signal.SIGSTOP)
        self.s3_frozen = True

    def thaw_s3(self) -> None:
        if self.s3_frozen and self.s3.proc is not None:
            os.killpg(self.s3.proc.pid, signal.SIGCONT)
        self.s3_frozen = False

    # -- namespaces --------------------------------------------------------------------------------

    def namespace(self, prefix: str) -> str:
        """A fresh namespace holding the S3 credentials Secret ``s3-credentials``."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        wait_for(lambda: self.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, "service account")
        endpoint = self.s3.endpoint()
        data = {"AWS_ACCESS_KEY_ID": endpoint.access_key, "AWS_SECRET_ACCESS_KEY": endpoint.secret_key}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self.api.create(f"/api/v1/namespaces/{name}/secrets", secret)
        return name
