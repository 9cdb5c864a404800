"""The configuration files of the real-container tier's nodes, as pure functions of a :class:`NodeSpec`.

containerd, the CNI bridge, the kubelet and kube-proxy each need a few settings that differ from
their defaults on this kind of machine (root without CAP_SYS_RESOURCE, cgroup v1 without systemd,
no registry, two nodes sharing one host): each one is set here with the reason next to it.

Callers: ``tests/containers/cluster.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

POD_CIDR = "10.244.0.0/16"
#: How long a node may stop renewing its lease before the node lifecycle controller marks it (and its
#: pods) not ready; upstream's 50 s, scaled down so that a whole-node kill is noticed within a test. The
#: kubelets renew every 2 s (``nodeLeaseDurationSeconds`` / 4) and post their status every 4 s, so a
#: loaded machine has five renewals to miss before a live node is taken for dead.
NODE_MONITOR_GRACE_S = 10
PAUSE_IMAGE = "docker.io/library/streamjob-pause:1"


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name (an IP the API server can reach, the kubelet listens there), pod subnet, dirs."""

    name: str
    index: int
    root: Path  # containerd and kubelet state (on a filesystem overlayfs can stack on)
    run: Path  # sockets and runtime state (short paths: unix socket paths are limited to 108 bytes)

    @property
    def subnet(self) -> str:
        return f"10.244.{self.index + 1}.0/24"

    @property
    def bridge(self) -> str:
        return f"sjbr{self.index}"

    @property
    def socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        # Each kubelet its own cgroup root: two kubelets under one /kubepods would delete each other's pods.
        return f"/streamjob-node-{self.index}"

    @property
    def cni_dir(self) -> Path:
        return self.root / "cni"


def containerd_config(node: NodeSpec) -> str:
    """containerd 1.6's config (version 2) for one node."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{node.root / "containerd"}"
state = "{node.run / "state"}"
# The default opt plugin would share /opt/containerd between the two nodes.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.socket}"

[ttrpc]
  address = "{node.run / "containerd.sock.ttrpc"}"

[metrics]
  address = ""

[{cri}]
  # No registry is reachable: the sandbox image is the locally built one, imported before any pod.
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: without this every pod fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  # Pod network namespaces under the node's own state dir (not the host's shared /run/netns).
  netns_mounts_under_state_dir = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # No systemd: the kubelet's cgroup driver is cgroupfs.
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{node.cni_dir}"
"""


def cni_config(node: NodeSpec) -> str:
    """A bridge network per node: pods of both nodes reach each other through the host's routing."""
    conf = {
        "cniVersion": "1.0.0",
        "name": f"streamjob-{node.index}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                # The host routes between the two bridges; pods only talk to pods and the host.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.run / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2)


def kubelet_config(node: NodeSpec) -> str:
    """The KubeletConfiguration of one node."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.name,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": node.name,
        "healthzPort": 10248,
        # The bed's API server has no kubelet client certificate: logs and exec go through anonymous auth.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "clusterDomain": "cluster.local",
        # Each kubelet deletes the log directories of pods it does not know: never share them.
        "podLogsDir": str(node.root / "pod-logs"),
        # The images were imported, not pulled: image GC must never remove them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A busy shared disk must not evict the test's pods.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "nodeStatusUpdateFrequency": "4s",
        # Renew the node's lease every 2 s (a quarter of this): well inside NODE_MONITOR_GRACE_S.
        "nodeLeaseDurationSeconds": 8,
        "syncFrequency": "10s",
        "serializeImagePulls": False,
        "maxPods": 60,
        "rotateCertificates": False,
    }
    return yaml.safe_dump(config)


def node_lifecycle_args(kubeconfig: Path, cert_dir: Path, port: int) -> list[str]:
    """A second kube-controller-manager running only the node lifecycle controller.

    The bed's own controller manager (tests/cluster/go/up.go) runs no node lifecycle controller (the
    process bed's node agent never dies); a real cluster's marks a silent node's Ready condition
    Unknown, its pods not ready, and taints it ``unreachable`` so that nothing new is scheduled there.
    A separate process keeps the bed's Go binary (and its cached build) unchanged. No taint-based
    eviction: pods are left for their owners (the operator) to replace.
    """
    return [
        "kube-controller-manager",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--controllers=node-lifecycle-controller",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s",
        "--node-monitor-period=2s",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--profiling=false",
        "--v=1",
    ]


def kube_proxy_config(kubeconfig: Path, hostname: str, healthz_port: int, metrics_port: int) -> str:
    """One kube-proxy for the host (both nodes share its network namespace and iptables)."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": hostname,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # Without br_netfilter guarantees, a Service's reply between two pods of one bridge would skip
        # the un-DNAT: masquerading every Service connection sends replies back through the host.
        "iptables": {"masqueradeAll": True},
        # Leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return yaml.safe_dump(config)
