"""``python -m tests.cluster up|down|status``: the e2e test bed by hand (``make testbed-up`` / ``testbed-down``).

``up`` builds (or finds in the cache) the control plane, then starts a background process
(``serve``) that runs it with the node agent and an S3 server (SeaweedFS), waits until all three
are ready and prints how to use them: the kubeconfig, the S3 endpoint and its credentials, and the
commands to install the CRD and run the operator. ``down`` stops that process, which stops the
components in order and kills every pod process. State, logs and a pid file live in ``--dir``
(default ``~/.cache/streamjob-testbed/bed``). See docs/testbed.md, "By hand".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.cluster.controlplane import ControlPlane, TestbedUnavailable, build

DEFAULT_DIR = Path(os.environ.get("STREAMJOB_TESTBED_DIR", Path.home() / ".cache" / "streamjob-testbed" / "bed"))
READY = "ready.json"
PID = "serve.pid"
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def usage(ready: dict[str, str]) -> str:
    """What to type next, for the bed described by ``ready`` (``serve``'s ready.json)."""
    venv = Path(sys.executable).parent
    kubeconfig = ready["kubeconfig"]
    lines = [
        "streamjob test bed is up.",
        "",
        f"  export KUBECONFIG={kubeconfig}",
        f"  export PATH={venv}:$PATH          # kubectl, streamjob, streamjob-operator",
        "  kubectl get nodes",
        f"  kubectl apply -f {ROOT / 'crds'}",
        "  STREAMJOB_OPERATOR_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))') \\",
        f"  AWS_ACCESS_KEY_ID={ready.get('s3_access_key', '-')} \\",
        f"  AWS_SECRET_ACCESS_KEY={ready.get('s3_secret_key', '-')} \\",
        f"    streamjob-operator --kubeconfig {kubeconfig} --standalone --metrics-port 0 &",
        "",
    ]
    if ready.get("s3_endpoint"):
        lines += [
            f"  S3: endpoint {ready['s3_endpoint']}, bucket {ready['s3_bucket']}, region {ready['s3_region']},",
            f"      access key {ready['s3_access_key']}, secret key {ready['s3_secret_key']} (pathStyle: true)",
        ]
    lines += [
        "  Pods run as local processes on 127.x addresses; `kubectl logs` works.",
        f"  Logs: {ready['logs']} (control plane), {ready['agent']} (node agent and pods)",
        "  Stop it with: python -m tests.cluster down   (or make testbed-down)",
    ]
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    if (pid := _running_pid(state_dir)) is not None:
        ready_file = state_dir / READY
        if ready_file.exists():
            print(f"already up (pid {pid}).\n")
            print(usage(json.loads(ready_file.read_text())))
            return 0
        print(f"a test bed is starting in {state_dir} (pid {pid}); `down` stops it", file=sys.stderr)
        return 1
    (state_dir / READY).unlink(missing_ok=True)
    print("building or finding the control plane (a cold build takes many minutes) ...", flush=True)
    try:
        build("controlplane", state_dir / "build")
    except TestbedUnavailable as err:
        print(f"cannot build the control plane: {err}", file=sys.stderr)
        return 1
    serve = [sys.executable, "-m", "tests.cluster", "serve", "--dir", str(state_dir)]
    if args.no_s3:
        serve.append("--no-s3")
    with (state_dir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            serve, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (state_dir / PID).write_text(str(proc.pid))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if (state_dir / READY).exists():
            print(usage(json.loads((state_dir / READY).read_text())))
            return 0
        if proc.poll() is not None:
            tail = (state_dir / "serve.log").read_text(errors="replace")[-3000:]
            print(f"the test bed did not start (exit {proc.returncode}):\n{tail}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"the test bed was not ready after {args.timeout:g}s; see {state_dir / 'serve.log'}", file=sys.stderr)
    _stop(proc.pid, 30)
    return 1


def _stop(pid: int, timeout: float) -> bool:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return False


def cmd_down(args: argparse.Namespace) -> int:
    pid = _running_pid(args.dir)
    if pid is None:
        print(f"no test bed runs from {args.dir}")
        return 0
    clean = _stop(pid, 90)
    (args.dir / READY).unlink(missing_ok=True)
    (args.dir / PID).unlink(missing_ok=True)
    print("test bed stopped" + ("" if clean else " (killed after 90 s)"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    pid = _running_pid(args.dir)
    if pid is None or not (args.dir / READY).exists():
        print("down" if pid is None else f"starting (pid {pid})")
        return 1
    print(usage(json.loads((args.dir / READY).read_text())))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the control plane, the node agent and S3 until SIGTERM; writes ready.json when all are up."""
    from tests.cluster.node_agent import NodeAgent

    state_dir: Path = args.dir
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    plane = ControlPlane(build("controlplane", state_dir / "build"), state_dir / "controlplane")
    agent: NodeAgent | None = None
    s3 = None
    try:
        state = plane.start()
        agent = NodeAgent(kubeconfig=str(state.kubeconfig), root=state_dir / "node-agent")
        agent.start()
        ready: dict[str, str] = {
            "kubeconfig": str(state.kubeconfig),
            "server": state.server,
            "logs": str(state.logs),
            "agent": str(agent.root),
        }
        if not args.no_s3:
            from tests.support.s3server import SeaweedServer

            s3 = SeaweedServer(state_dir / "s3")
            s3.start()
            endpoint = s3.endpoint()
            ready |= {
                "s3_endpoint": endpoint.endpoint_url,
                "s3_bucket": endpoint.bucket,
                "s3_region": endpoint.region,
                "s3_access_key": endpoint.access_key,
                "s3_secret_key": endpoint.secret_key,
            }
        (state_dir / READY).write_text(json.dumps(ready, indent=1))
        print("ready", flush=True)
        stop.wait()
    finally:
        if s3 is not None:
            s3.stop()
        if agent is not None:
            agent.stop()
        plane.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description="The e2e test bed by hand.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("up", "start the control plane, node agent and S3 in the background; print how to use them"),
        ("down", "stop them"),
        ("status", "say whether it runs, and how to use it"),
        ("serve", "run them in the foreground (what `up` starts)"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
        if name in ("up", "serve"):
            command.add_argument("--no-s3", action="store_true", help="without the S3 server")
        if name == "up":
            command.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    args.dir = args.dir.expanduser().absolute()
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "serve": cmd_serve}[args.command](args)
