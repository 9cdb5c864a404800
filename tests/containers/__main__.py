"""``python -m tests.containers up|clean`` (``make containers-up``): the real-container cluster by hand.

Builds (or finds in the caches) the images, the control plane and the node binaries, starts the
two-node cluster in the foreground, prints its kubeconfig and how to reach it, and tears everything
down (processes, mounts, cgroups, iptables rules) on Ctrl-C or SIGTERM. ``clean`` removes what a
run killed with SIGKILL left behind (a new run does it too). See docs/testbed.md.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster.controlplane import TestbedUnavailable, build
from tests.containers.cluster import HOST_ADDRESS, ClusterUnavailable, ContainerCluster, clean_stale, write_state

HERE = Path(__file__).resolve().parent


def _image(target: str) -> Path:
    out = subprocess.run(["bash", str(HERE / "images.sh"), target], stdout=subprocess.PIPE, check=True)
    return Path(out.stdout.decode().split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.containers")
    parser.add_argument(
        "command", choices=["up", "clean"], help="up: run the cluster; clean: remove a killed run's leftovers"
    )
    parser.add_argument("--dir", type=Path, default=None, help="state and logs (default: a new temporary directory)")
    args = parser.parse_args()
    if args.command == "clean":
        clean_stale()
        return 0
    root = args.dir or Path(tempfile.mkdtemp(prefix="streamjob-containers-"))
    try:
        images = [_image("bundle")]
        cluster = ContainerCluster(
            build("controlplane", root), build("nodes", root), images, root, kube_router=build("kube-router", root)
        )
    except (subprocess.CalledProcessError, TestbedUnavailable) as err:
        print(f"could not build the cluster's parts: {err}", file=sys.stderr)
        return 1
    # Ctrl-C and SIGTERM both stop it, also mid-start (a shell's background job ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        state = cluster.start()
        write_state(root / "state.json", cluster)
        print(
            "real-container cluster is up (Ctrl-C stops it and cleans up).\n\n"
            f"  export KUBECONFIG={state.kubeconfig}\n"
            "  kubectl get nodes -o wide\n"
            f"  pods reach host servers on {HOST_ADDRESS} (the API server is forwarded there)\n"
            f"  logs: {cluster.logs}",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except ClusterUnavailable as err:
        print(f"the cluster did not start: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the cluster", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up must finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
