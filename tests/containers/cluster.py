"""A two-node Kubernetes cluster of real containers on one host, around the bed's control plane.

:class:`ContainerCluster` starts its own ``testbed up`` control plane (tests/cluster), then per node
a containerd (Debian's, with runc and the CNI bridge plugin) and a kubelet (``nodebed kubelet``, built
from the bed's Kubernetes module pins); for the host one kube-scheduler and one kube-proxy (iptables).
The nodes are named 127.0.0.2 and 127.0.0.3 (their kubelets listen there, the API server reaches them
for logs and exec). A second controller manager runs the node lifecycle controller, so that a node
killed with :meth:`ContainerCluster.kill_node` goes NotReady as on a real cluster; with a
``kube_router`` binary, kube-router's firewall enforces NetworkPolicies for the pods of
:data:`POLICY_NODE` (one instance: the nodes share the host's iptables). Pods reach the
host on :data:`HOST_ADDRESS`, where :class:`Forwarder`s expose the loopback-bound API server (as the
``kubernetes`` Service's endpoint) and any other host server.

Everything it starts or changes on the host (processes, mounts, cgroups, iptables rules, the host
address, the bridges) is undone by :meth:`ContainerCluster.stop`, also after a failed start.

Callers: ``tests/containers/fixtures.py`` (the ``container_cluster`` fixture) and
``python -m tests.containers up`` (docs/testbed.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import ControlPlane, ControlPlaneState, TestbedUnavailable
from tests.cluster.kubeapi import KubeApi, KubeError
from tests.cluster.podproc import die_with_parent
from tests.containers import config
from tests.containers.config import NodeSpec
from tests.containers.forward import Forwarder

HOST_ADDRESS = "10.250.0.1"
NODE_NAMES = ("127.0.0.2", "127.0.0.3")
#: The node whose pods kube-router's firewall guards. Both nodes share the host's filter table, and a
#: kube-router instance removes every pod chain it does not own: a second one would undo the first's.
POLICY_NODE = NODE_NAMES[0]
#: kube-router's firewall chains and ipsets (``pkg/controllers/netpol``), removed by :func:`remove_policy_rules`.
POLICY_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
POLICY_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")
CGROUP_FS = Path("/sys/fs/cgroup")
STATE_ROOT = Path("/var/lib/streamjob-nodes")  # overlayfs needs a real filesystem, not /tmp's tmpfs
RUN_ROOT = Path("/run/sjn")
#: One cluster per machine: node names, ports, bridges, cgroup roots and the host address are fixed.
LOCK_FILE = Path("/run/streamjob-containers.lock")
LOCK_WAIT_S = 15 * 60


class ClusterUnavailable(Exception):
    """The cluster could not start; the message says which part and where its log is."""


def _run(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ClusterUnavailable(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Polls ``check`` until truthy; raises :class:`ClusterUnavailable` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # a poll that fails (API server busy, socket not yet there) is retried
            last = err
        time.sleep(interval)
    raise ClusterUnavailable(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


class ContainerCluster:
    """The cluster's processes and host changes; :meth:`start` then :meth:`stop` (idempotent)."""

    def __init__(
        self, controlplane: Path, nodebed: Path, images: list[Path], root: Path, kube_router: Path | None = None
    ) -> None:
        self.nodebed = nodebed
        self.kube_router = kube_router
        self.images = images
        self.root = root
        self.logs = root / "logs"
        self.run_id = f"{os.getpid()}"
        self.nodes = [
            NodeSpec(name=name, index=i, root=STATE_ROOT / f"{self.run_id}-{i}", run=RUN_ROOT / f"{self.run_id}-{i}")
            for i, name in enumerate(NODE_NAMES)
        ]
        self.plane = ControlPlane(controlplane, root / "controlplane")
        self.state: ControlPlaneState | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.forwarders: list[Forwarder] = []
        self._undo: list[tuple[str, ...]] = []
        self._lock: int | None = None

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> ControlPlaneState:
        try:
            return self._start()
        except KubeError as err:
            self.stop()
            raise ClusterUnavailable(f"the API server refused a set-up step: {err}") from err
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ControlPlaneState:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        clean_stale()  # what a killed run left behind: nothing else can be running now
        try:
            self.state = self.plane.start()
        except TestbedUnavailable as err:
            raise ClusterUnavailable(str(err)) from err
        api = KubeApi(str(self.state.kubeconfig))
        self._host_network()
        api_port = int(self.state.server.rsplit(":", 1)[1])
        self.forwarders.append(Forwarder(HOST_ADDRESS, "127.0.0.1", api_port))
        self._kubernetes_endpoints(api, self.forwarders[-1].port)
        self._start_node_lifecycle()
        for node in self.nodes:  # from this thread: the processes die with the thread that started them
            self._start_runtime(node)
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self._load_images, self.nodes))
        for node in self.nodes:
            self._start_kubelet(node)
        self._start_host_components()
        for node in self.nodes:
            wait_until(lambda n=node: _ready(api, n.name), 180, f"node {node.name} Ready (log {self.logs})")
            _untaint(api, node.name)
        if self.kube_router is not None:
            self._start_policy_agent()
        wait_until(
            lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default"), 60, "the default ServiceAccount"
        )
        return self.state

    def _take_lock(self) -> None:
        """Waits for another real-container cluster on this machine (another test run) to stop."""
        self._lock = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(self._lock, 0)
                os.write(self._lock, f"{os.getpid()}\n".encode())
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = Path(LOCK_FILE).read_text().strip()
                    raise ClusterUnavailable(
                        f"another real-container cluster (pid {holder}) held {LOCK_FILE} for {LOCK_WAIT_S}s"
                    ) from None
                time.sleep(1)

    def _host_network(self) -> None:
        """The pod-facing host address, and FORWARD accepts for the pod range (dockerd's policy is DROP)."""
        if HOST_ADDRESS not in _run("ip", "-4", "addr", "show", "dev", "lo").stdout:
            _run("ip", "addr", "add", f"{HOST_ADDRESS}/32", "dev", "lo")
            self._undo.append(("ip", "addr", "del", f"{HOST_ADDRESS}/32", "dev", "lo"))
        for rule in (("-s", config.POD_CIDR, "-j", "ACCEPT"), ("-d", config.POD_CIDR, "-j", "ACCEPT")):
            _run("iptables", "-w", "-I", "FORWARD", "1", *rule)
            self._undo.append(("iptables", "-w", "-D", "FORWARD", *rule))

    def _kubernetes_endpoints(self, api: KubeApi, port: int) -> None:
        """The ``kubernetes`` Service's endpoint: the forwarder (the bed runs no endpoint reconciler)."""
        wait_until(lambda: api.get("/api/v1/namespaces/default/services/kubernetes"), 60, "the kubernetes Service")
        labels = {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "tests"}
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [HOST_ADDRESS], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
        try:
            api.delete(f"{path}/kubernetes")  # a control plane restarted on its old state dir has one
        except KubeError as err:
            if err.status != 404:
                raise
        api.create(path, slice_)

    def _start_runtime(self, node: NodeSpec) -> None:
        """containerd for one node (the images are imported before any kubelet starts)."""
        for path in (node.root, node.run, node.cni_dir, node.run / "ipam"):
            path.mkdir(parents=True, exist_ok=True)
        (node.root / "containerd.toml").write_text(config.containerd_config(node))
        (node.cni_dir / "10-streamjob.conflist").write_text(config.cni_config(node))
        self._spawn(f"containerd-{node.index}", ["containerd", "--config", str(node.root / "containerd.toml")])
        wait_until(
            lambda: _run("ctr", "-a", str(node.socket), "version", check=False).returncode == 0,
            60,
            f"containerd of {node.name} (log {self.logs}/containerd-{node.index}.log)",
        )

    def _load_images(self, node: NodeSpec) -> None:
        for image in self.images:
            _run(
                "ctr",
                "-a",
                str(node.socket),
                "-n",
                "k8s.io",
                "images",
                "import",
                str(image),
                timeout=600,
            )

    def _start_kubelet(self, node: NodeSpec) -> None:
        assert self.state is not None
        for controller in _cgroup_controllers():
            (CGROUP_FS / controller / node.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
        (node.root / "kubelet.yaml").write_text(config.kubelet_config(node))
        self._spawn(
            f"kubelet-{node.index}",
            [
                str(self.nodebed), "kubelet",
                f"--config={node.root / 'kubelet.yaml'}",
                f"--kubeconfig={self.state.kubeconfig}",
                f"--root-dir={node.root / 'kubelet'}",
                f"--cert-dir={node.root / 'kubelet' / 'pki'}",
                # An IP as the name: the API server reaches the kubelet there (logs, exec). No
                # --node-ip: the kubelet refuses a loopback one, and takes the name's IP instead.
                f"--hostname-override={node.name}",
                "--v=1",
            ],
        )  # fmt: skip

    def _start_node_lifecycle(self) -> None:
        assert self.state is not None
        from tests.support.s3server import free_port

        cert_dir = self.root / "node-lifecycle-certs"
        argv = [str(self.plane.binary), *config.node_lifecycle_args(self.state.kubeconfig, cert_dir, free_port())]
        self._spawn("kube-node-lifecycle", argv)

    def _start_policy_agent(self) -> None:
        """kube-router with only its firewall (no routing, no service proxy), for :data:`POLICY_NODE`."""
        assert self.state is not None and self.kube_router is not None
        from tests.support.s3server import free_port

        health = free_port()
        self._spawn(
            "kube-router",
            [
                str(self.kube_router),
                f"--kubeconfig={self.state.kubeconfig}",
                f"--hostname-override={POLICY_NODE}",
                "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--health-port={health}", "--metrics-port=0", "--iptables-sync-period=1m", "--v=1",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=5) as response:
                return bool(response.status == 200)

        wait_until(healthy, 120, f"kube-router's firewall (log {self.logs}/kube-router.log)")

    def _start_host_components(self) -> None:
        assert self.state is not None
        from tests.support.s3server import free_port

        proxy_config = self.root / "kube-proxy.yaml"
        proxy_config.write_text(
            config.kube_proxy_config(self.state.kubeconfig, self.nodes[0].name, free_port(), free_port())
        )
        self._spawn("kube-proxy", [str(self.nodebed), "kube-proxy", f"--config={proxy_config}", "--v=1"])
        self._spawn(
            "kube-scheduler",
            [
                str(self.nodebed), "kube-scheduler",
                f"--kubeconfig={self.state.kubeconfig}",
                f"--authentication-kubeconfig={self.state.kubeconfig}",
                f"--authorization-kubeconfig={self.state.kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--v=1",
            ],
        )  # fmt: skip

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )

    def forward(self, target_port: int) -> str:
        """Exposes ``127.0.0.1:target_port`` to pods; returns the ``host:port`` pods use."""
        forwarder = Forwarder(HOST_ADDRESS, "127.0.0.1", target_port)
        self.forwarders.append(forwarder)
        return f"{HOST_ADDRESS}:{forwarder.port}"

    # -- faults ----------------------------------------------------------------------------------

    def kill_container(self, pod: dict[str, Any], container: str) -> None:
        """SIGKILLs one container of ``pod`` through its node's containerd, as an OOM kill or crash would."""
        node = next(n for n in self.nodes if n.name == pod["spec"]["nodeName"])
        statuses = pod["status"]["containerStatuses"]
        container_id = next(s["containerID"] for s in statuses if s["name"] == container).split("://", 1)[1]
        _run("ctr", "-a", str(node.socket), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", container_id)

    def node_of(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def kill_node(self, name: str) -> None:
        """A node dies at once: its kubelet, its containerd, the shims and every process of its pods.

        The kubelet goes first, so that it reports nothing of its containers' deaths: the API keeps
        the pods Running until the node lifecycle controller notices the silence (as with a power
        loss). The node's state (images, pod directories) stays for :meth:`restart_node`.
        """
        node = self.node_of(name)
        for proc_name in (f"kubelet-{node.index}", f"containerd-{node.index}"):
            proc = self.procs.pop(proc_name, None)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _kill_shims(node.socket)
        _kill_cgroup(node.cgroup_root)

    def restart_node(self, name: str) -> None:
        """Starts a killed node's containerd and kubelet again on its old state; waits for it to be Ready."""
        assert self.state is not None
        node = self.node_of(name)
        self._start_runtime(node)
        self._start_kubelet(node)
        api = KubeApi(str(self.state.kubeconfig))
        wait_until(lambda: _ready(api, node.name), 180, f"node {node.name} Ready again (log {self.logs})")

    # -- stop --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops everything and undoes every host change, whatever state :meth:`start` got to."""
        for name in [n for n in self.procs if n.startswith(("kubelet", "kube-"))]:
            _stop(self.procs.pop(name))
        for node in self.nodes:
            _kill_cgroup(node.cgroup_root)
            _kill_shims(node.socket)
            proc = self.procs.pop(f"containerd-{node.index}", None)
            if proc is not None:
                _stop(proc)
            _unmount_under(node.root, node.run)
            _remove_cgroup(node.cgroup_root)
            shutil.rmtree(node.root, ignore_errors=True)
            shutil.rmtree(node.run, ignore_errors=True)
            _run("ip", "link", "del", node.bridge, check=False)
        if os.path.exists(self.nodebed):
            _run(str(self.nodebed), "kube-proxy", "--cleanup", "--v=0", check=False)
        remove_policy_rules()
        for table in ("mangle", "nat", "filter"):  # the kubelets' iptables canaries
            _run("iptables", "-w", "-t", table, "-X", "KUBE-KUBELET-CANARY", check=False)
        for forwarder in self.forwarders:
            forwarder.close()
        self.forwarders.clear()
        while self._undo:
            _run(*self._undo.pop(), check=False)
        self.plane.stop()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None


def clean_stale() -> None:
    """Removes the nodes' leftovers of a run that was killed before its clean-up (call with the lock)."""
    roots = sorted({*STATE_ROOT.glob("*"), *RUN_ROOT.glob("*")}) if STATE_ROOT.exists() or RUN_ROOT.exists() else []
    for path in roots:
        _kill_shims(path / "containerd.sock")
    _unmount_under(STATE_ROOT, RUN_ROOT)
    for path in roots:
        shutil.rmtree(path, ignore_errors=True)
    for index in range(len(NODE_NAMES)):
        root = f"/streamjob-node-{index}"
        _kill_cgroup(root)
        _remove_cgroup(root)
        _run("ip", "link", "del", f"sjbr{index}", check=False)
    for rule in (("-s", config.POD_CIDR, "-j", "ACCEPT"), ("-d", config.POD_CIDR, "-j", "ACCEPT")):
        while _run("iptables", "-w", "-D", "FORWARD", *rule, check=False).returncode == 0:
            pass
    if HOST_ADDRESS in _run("ip", "-4", "addr", "show", "dev", "lo").stdout:
        _run("ip", "addr", "del", f"{HOST_ADDRESS}/32", "dev", "lo", check=False)
    remove_policy_rules()


def remove_policy_rules() -> None:
    """Removes kube-router's firewall chains, the jumps to them and its ipsets.

    kube-router v2.1's own ``--cleanup-config`` leaves the firewall's rules (it cleans with empty
    handlers), and stale pod chains at the top of FORWARD would filter the next run's pods.
    """
    saved = _run("iptables-save", "-t", "filter", check=False).stdout
    chains = [line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")]
    ours = [c for c in chains if c.startswith(POLICY_CHAIN_PREFIXES)]
    for line in saved.splitlines():
        args = shlex.split(line)
        if args[:1] == ["-A"] and args[1] not in ours and any(a in ours for a in args):
            _run("iptables", "-w", "-t", "filter", "-D", *args[1:], check=False)
    for flag in ("-F", "-X"):
        for chain in ours:
            _run("iptables", "-w", "-t", "filter", flag, chain, check=False)
    if shutil.which("ipset"):
        names = _run("ipset", "list", "-n", check=False).stdout.split()
        for name in (n for n in names if n.startswith(POLICY_IPSET_PREFIXES)):
            _run("ipset", "destroy", name, check=False)


def _ready(api: KubeApi, node: str) -> bool:
    conditions = api.get(f"/api/v1/nodes/{node}").get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _untaint(api: KubeApi, node: str) -> None:
    """Removes ``node.kubernetes.io/not-ready``: the bed runs no node-lifecycle controller to do it."""
    current = api.get(f"/api/v1/nodes/{node}")
    taints = [t for t in current["spec"].get("taints", []) if not t["key"].startswith("node.kubernetes.io/")]
    api.merge_patch(f"/api/v1/nodes/{node}", {"spec": {"taints": taints}})


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _cgroup_controllers() -> list[str]:
    return sorted(p.name for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink())


def _kill_cgroup(root: str) -> None:
    """SIGKILLs every process of a node's pods (all of them live under its cgroup root)."""
    base = CGROUP_FS / "pids" / root.lstrip("/")
    for procs in base.rglob("cgroup.procs") if base.is_dir() else []:
        for pid in procs.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _remove_cgroup(root: str) -> None:
    for controller in _cgroup_controllers():
        base = CGROUP_FS / controller / root.lstrip("/")
        if not base.is_dir():
            continue
        for directory in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir_retrying(directory)
        _rmdir_retrying(base)


def _rmdir_retrying(path: Path) -> None:
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _kill_shims(socket: Path) -> None:
    """SIGKILLs the containerd shims of one node (their command line names its socket)."""
    needle = str(socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _unmount_under(*roots: Path) -> None:
    """Lazily unmounts every mount below ``roots`` (rootfs overlays, netns, volumes), deepest first."""
    prefixes = tuple(f"{root}/" for root in roots)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted({m for m in mounts if m.startswith(prefixes)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def write_state(path: Path, cluster: ContainerCluster) -> None:
    """What ``python -m tests.containers up`` reports for a shell (kubeconfig, host address, logs)."""
    assert cluster.state is not None
    path.write_text(
        json.dumps(
            {
                "kubeconfig": str(cluster.state.kubeconfig),
                "server": cluster.state.server,
                "hostAddress": HOST_ADDRESS,
                "nodes": list(NODE_NAMES),
                "logs": str(cluster.logs),
            },
            indent=2,
        )
    )
