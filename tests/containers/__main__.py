"""``python -m tests.containers up`` (``make containers-up``): the real-container cluster by hand.

Builds (or finds in the caches) the images, the control plane and the node binaries, starts the
two-node cluster in the foreground, prints its kubeconfig and how to reach it, and tears everything
down (processes, mounts, cgroups, iptables rules) on Ctrl-C or SIGTERM. See docs/testbed.md.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.cluster.controlplane import TestbedUnavailable, build
from tests.containers.cluster import HOST_ADDRESS, ClusterUnavailable, ContainerCluster, write_state

HERE = Path(__file__).resolve().parent


def _image(target: str) -> Path:
    out = subprocess.run(["bash", str(HERE / "images.sh"), target], stdout=subprocess.PIPE, check=True)
    return Path(out.stdout.decode().split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.containers")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--dir", type=Path, default=None, help="state and logs (default: a new temporary directory)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="streamjob-containers-"))
    try:
        images = [_image(t) for t in ("pause", "streamjob", "examples", "jobs")]
        cluster = ContainerCluster(build("controlplane", root), build("nodes", root), images, root)
    except (subprocess.CalledProcessError, TestbedUnavailable) as err:
        print(f"could not build the cluster's parts: {err}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
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
        stop.wait()
    except ClusterUnavailable as err:
        print(f"the cluster did not start: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
