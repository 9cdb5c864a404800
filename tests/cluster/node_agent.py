"""The test bed's node agent: a kubelet stand-in that runs pods' containers as local processes.

It registers one Ready Node, binds every unscheduled pod to it, and for each bound pod: gives it its
own loopback address (127.N.x.y, N claimed per agent) as ``status.podIP``, materialises its volumes,
resolves its env (fieldRef, secretKeyRef, configMapKeyRef, envFrom, ``$(VAR)``), starts each
container's ``command``/``args`` as a process (see ``podproc.py``; the command runs from the PATH of
the test venv) after its init containers once its image is available (see ``images.py``: an unknown
image keeps the container waiting in ``ErrImagePull`` / ``ImagePullBackOff`` and the pod Pending),
runs httpGet/tcpSocket/exec readiness and liveness probes, restarts containers per ``restartPolicy``
and reports status as the kubelet does (see ``podstate.py``: Pending → Running → Succeeded/Failed
with exit codes, reasons and times; waiting reasons ``CreateContainerConfigError`` for a missing
ConfigMap/Secret and ``CreateContainerError`` for a command that cannot be found).
``kubectl logs`` works (``kubelet_logs.py``). Deletion is honoured: SIGTERM, the grace period,
SIGKILL, then the pod object is removed.
``securityContext`` (user, read-only root filesystem, capabilities) is accepted but not enforced:
the processes run as the agent's user on the host's filesystem. A volume mounted over the host's
temporary directory (the job pods' emptyDir at ``/tmp``) is left out, since tests and pods share
that directory (see ``podproc.hides_shared``); the pod then writes to the host's ``/tmp``.

Tests reach it through the ``node_agent`` fixture (``tests/cluster/fixtures.py``) and its helpers
:meth:`NodeAgent.pod_ip`, :meth:`NodeAgent.log_path`, :meth:`NodeAgent.read_log`,
:meth:`NodeAgent.crash`, :meth:`NodeAgent.pid`, :meth:`NodeAgent.started` and
:meth:`NodeAgent.container_state`; ``NodeAgent.images`` holds the node's images and its registry.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.cluster import images, podproc, podspec
from tests.cluster.kubeapi import KubeApi, KubeError, pod_path
from tests.cluster.kubelet_logs import KubeletLogServer
from tests.cluster.podstate import Container, PodRun, init_progress, now_rfc3339, pod_status
from tests.cluster.probes import ProbeRunner

Json = dict[str, Any]
log = logging.getLogger("streamjob.testbed.node_agent")

DEFAULT_NODE = "testbed-node"
TICK = 0.1
RETRY_CONFIG = 2.0


class NodeAgent:
    """Registers a Node and runs the pods bound to it; start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        *,
        kubeconfig: str,
        root: Path,
        node_name: str = DEFAULT_NODE,
        bin_dir: Path | None = None,
        ip_prefix: str | None = None,
        known_images: list[str] | None = None,
    ) -> None:
        self.api = KubeApi(kubeconfig)
        #: The node's images and its registry (``images.default_known()`` unless given): tests
        #: ``push``/``load``/``remove`` images to make pulls succeed or fail.
        self.images = images.ImageStore(images.default_known() if known_images is None else known_images)
        self.root = root
        self.node_name = node_name
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.ip_lock: int | None = None
        self.ip_prefix = ip_prefix or self._claim_ip_range()
        self.api_port = str(urlparse(self.api.server).port or 443)
        self.pods: dict[str, PodRun] = {}
        self.events: queue.Queue[tuple[str, Json]] = queue.Queue()
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.probe_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="testbed-probe")
        self.next_ip = 1
        #: Host directories tests and pods share; a volume mounted over one is left out (``podproc.hides_shared``).
        self.shared_dirs = (Path(tempfile.gettempdir()).resolve(),)
        self.last_heartbeat = 0.0
        self.root.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.root / "agent.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self.log_handler = handler
        #: Serves ``kubectl logs`` (see ``kubelet_logs.py``); its port goes into the Node's status.
        self.kubelet_logs = KubeletLogServer(lambda ns, pod, c: self.log_path(ns, pod, c), self.root / "kubelet")
        self.kubelet_port = 0

    # ----------------------------------------------------------------- public helpers for tests

    def find(self, namespace: str, name: str) -> PodRun:
        """The most recent run of the pod with this name (pods re-created under one name get a new run)."""
        with self.lock:
            runs = [run for run in self.pods.values() if run.namespace == namespace and run.name == name]
        if not runs:
            raise KeyError(f"the node agent has not run pod {namespace}/{name}")
        return runs[-1]

    def pod_ip(self, namespace: str, name: str) -> str:
        """The pod's 127.x address (also its ``status.podIP`` and its processes' ``POD_IP``)."""
        return self.find(namespace, name).ip

    def _container(self, namespace: str, name: str, container: str | None) -> Container:
        run = self.find(namespace, name)
        for item in [*run.containers, *run.init_containers]:
            if container is None or item.name == container:
                return item
        raise KeyError(f"pod {namespace}/{name} has no container {container!r}")

    def log_path(self, namespace: str, name: str, container: str | None = None) -> Path:
        """The file holding the container's stdout and stderr (first container by default)."""
        return self._container(namespace, name, container).log_path

    def read_log(self, namespace: str, name: str, container: str | None = None) -> str:
        path = self.log_path(namespace, name, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, namespace: str, name: str, container: str | None = None) -> int | None:
        """The container's main process ID while it runs."""
        item = self._container(namespace, name, container)
        with self.lock:
            return item.proc.pid if item.running else None

    def started(self, namespace: str, name: str, container: str | None = None) -> bool:
        """Whether the agent ever started a process for the container (an image never pulled: no)."""
        return bool(self._container(namespace, name, container).started_at)

    def container_state(self, namespace: str, name: str, container: str | None = None) -> Json:
        """The container's state as the agent last knew it (``waiting``/``running``/``terminated``).

        Kept after the pod is gone, so a test can tell why a pod the operator already deleted
        never ran.
        """
        with self.lock:
            return dict(self._container(namespace, name, container).state)

    def crash(self, namespace: str, name: str, container: str | None = None, sig: int = signal.SIGKILL) -> int:
        """Fault injection: sends ``sig`` (SIGKILL by default) to the container's process group."""
        item = self._container(namespace, name, container)
        with self.lock:
            if not item.running:
                raise RuntimeError(f"container {item.name} of {namespace}/{name} is not running")
            pid = int(item.proc.pid)
            os.killpg(pid, sig)
        log.info("crash: sent signal %d to %s/%s/%s (pid %d)", sig, namespace, name, item.name, pid)
        return pid

    def pod_dirs(self, namespace: str | None = None) -> list[Path]:
        """The directories (volumes, logs) of the pods run so far, optionally of one namespace."""
        with self.lock:
            return [run.pod_dir for run in self.pods.values() if namespace in (None, run.namespace)]

    def _claim_ip_range(self) -> str:
        """Claims a free ``127.N`` range (N in 1..254) for this agent's pods with a lock file.

        Several test sessions on one machine (developers running e2e tests side by side) then never
        hand out the same pod IP; the lock is released when the agent stops or its process ends.
        """
        lock_dir = Path(tempfile.gettempdir()) / "streamjob-testbed-ip"
        lock_dir.mkdir(exist_ok=True)
        for octet in range(1, 255):
            fd = os.open(lock_dir / f"127.{octet}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.ip_lock = fd
            return f"127.{octet}"
        raise RuntimeError(f"no free 127.N range for pod IPs: every lock in {lock_dir} is held")

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.kubelet_port = self.kubelet_logs.start()
        self.register_node()
        for target, name in ((self.watch_loop, "testbed-watch"), (self.run_loop, "testbed-agent")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Stops the loops and SIGKILLs every container process still running."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)
        with self.lock:
            for run in self.pods.values():
                for item in run.every():
                    self._kill_group(item, signal.SIGKILL)
        self.probe_pool.shutdown(wait=False, cancel_futures=True)
        self.kubelet_logs.stop()
        if self.ip_lock is not None:
            os.close(self.ip_lock)
            self.ip_lock = None
        log.removeHandler(self.log_handler)
        self.log_handler.close()

    def register_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "streamjob.dev/testbed": "true",
        }
        try:
            self.api.create(
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels}},
            )
        except KubeError as err:
            if err.status != 409:
                raise
        self.heartbeat()

    def heartbeat(self) -> None:
        stamp = now_rfc3339()
        capacity = dict(podspec.NODE_CAPACITY)
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHas{reason}",
                "message": "test bed",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for kind, reason in (
                ("MemoryPressure", "SufficientMemory"),
                ("DiskPressure", "NoDiskPressure"),
                ("PIDPressure", "SufficientPID"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "streamjob test bed node agent is ready",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        )
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            # No Hostname address: the API server would prefer it for `kubectl logs`, and the node's name
            # does not resolve; it reaches the log endpoint at the InternalIP.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "testbed",
                "systemUUID": "testbed",
                "bootID": "testbed",
                "kernelVersion": os.uname().release,
                "osImage": "streamjob test bed",
                "containerRuntimeVersion": "testbed://processes",
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.api.merge_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})
        self.last_heartbeat = time.monotonic()

    # ------------------------------------------------------------------------------ the loops

    def watch_loop(self) -> None:
        """Lists then watches all pods, feeding events to the run loop; re-lists after errors."""
        resource_version = ""
        while not self.stopping.is_set():
            try:
                if not resource_version:
                    listing = self.api.get("/api/v1/pods")
                    for pod in listing.get("items", []):
                        self.events.put(("SYNC", pod))
                    resource_version = listing["metadata"]["resourceVersion"]
                for event in self.api.watch("/api/v1/pods", resource_version, timeout_seconds=30):
                    if self.stopping.is_set():
                        return
                    kind, obj = event.get("type", ""), event.get("object", {})
                    if kind == "ERROR":
                        resource_version = ""
                        break
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if kind != "BOOKMARK":
                        self.events.put((kind, obj))
            except Exception as err:  # the API server may be restarting; keep trying
                if self.stopping.is_set():
                    return
                log.warning("watch: %s", err)
                resource_version = ""
                time.sleep(1)

    def run_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                kind, pod = self.events.get(timeout=TICK)
            except queue.Empty:
                kind, pod = "", {}
            try:
                with self.lock:
                    if pod:
                        self.handle(kind, pod)
                    self.tick()
                if time.monotonic() - self.last_heartbeat > 20:
                    self.heartbeat()
            except Exception:
                log.exception("agent loop")
                time.sleep(0.5)

    # ------------------------------------------------------------------------------ pod events

    def handle(self, kind: str, pod: Json) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        node = spec.get("nodeName")
        if not node:
            if (
                kind != "DELETED"
                and not meta.get("deletionTimestamp")
                and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
            ):
                self.bind(namespace, name, uid)
            return
        if node != self.node_name:
            return
        run = self.pods.get(uid)
        if kind == "DELETED":
            if run is not None and not run.gone:
                for item in run.every():
                    self._kill_group(item, signal.SIGKILL)
                run.gone = True
                self.images.forget(uid)
            return
        if run is None:
            phase = pod.get("status", {}).get("phase", "Pending")
            if meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
                if meta.get("deletionTimestamp"):
                    self.remove(namespace, name, uid)
                return
            run = self.admit(pod)
        run.pod = pod
        if meta.get("deletionTimestamp") and run.kill_deadline is None:
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            run.kill_deadline = time.monotonic() + float(grace)
            log.info("pod %s/%s deleted: SIGTERM, grace %ss", namespace, name, grace)
            for item in run.every():
                if item.running:
                    item.proc.send_signal(signal.SIGTERM)

    def bind(self, namespace: str, name: str, uid: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.api.create(pod_path(namespace, name, "binding"), body)
            log.info("bound %s/%s", namespace, name)
        except KubeError as err:
            if err.status not in (404, 409):
                log.warning("bind %s/%s: %s", namespace, name, err)

    def allocate_ip(self) -> str:
        used = {run.ip for run in self.pods.values() if not run.gone}
        while True:
            index = self.next_ip
            self.next_ip = self.next_ip % (254 * 256) + 1
            ip = f"{self.ip_prefix}.{(index - 1) // 254}.{(index - 1) % 254 + 1}"
            if ip not in used:
                return ip

    def admit(self, pod: Json) -> PodRun:
        meta = pod["metadata"]
        pod_dir = self.root / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"

        def records(field: str) -> list[Container]:
            return [
                Container(
                    name=spec["name"],
                    spec=spec,
                    log_path=pod_dir / "logs" / f"{spec['name']}.log",
                    termination_file=pod_dir / "termination" / spec["name"],
                    init=field == "initContainers",
                    state=podspec.waiting_state(
                        "PodInitializing"
                        if field == "containers" and pod["spec"].get("initContainers")
                        else "ContainerCreating",
                        "",
                    ),
                )
                for spec in pod["spec"].get(field) or []
            ]

        run = PodRun(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            ip=self.allocate_ip(),
            pod_dir=pod_dir,
            pod=pod,
            init_containers=records("initContainers"),
            containers=records("containers"),
            start_time=now_rfc3339(),
        )
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.pods[run.uid] = run
        log.info("admitted %s/%s as %s in %s", run.namespace, run.name, run.ip, pod_dir)
        return run

    def remove(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.api.delete(pod_path(namespace, name), body)
            self.images.forget(uid)
            log.info("removed %s/%s", namespace, name)
        except KubeError as err:
            if err.status not in (404, 409):
                log.warning("remove %s/%s: %s", namespace, name, err)

    # ------------------------------------------------------------------------------ the tick

    def tick(self) -> None:
        now = time.monotonic()
        for run in list(self.pods.values()):
            if run.gone:
                continue
            deleting = run.kill_deadline is not None
            for item in run.every():
                self.observe(run, item, now, deleting)
            if not deleting:
                initialized, next_init, _ = init_progress(run)
                pending = run.containers if initialized else [next_init] if next_init is not None else []
                for item in pending:
                    if not item.done and not item.running and now >= item.next_start:
                        self.start_container(run, item)
            if deleting:
                if all(not item.running for item in run.every()):
                    for item in run.every():
                        self._kill_group(item, signal.SIGKILL)
                    self.report(run)
                    self.remove(run.namespace, run.name, run.uid)
                    run.gone = True
                    continue
                if run.kill_deadline is not None and now >= run.kill_deadline:
                    for item in run.every():
                        if item.running:
                            log.info("grace over for %s/%s: SIGKILL", run.namespace, run.name)
                            self._kill_group(item, signal.SIGKILL)
            self.report(run)

    def observe(self, run: PodRun, item: Container, now: float, deleting: bool) -> None:
        """Notices a container's exit and drives its probes."""
        if item.proc is None:
            return
        code = item.proc.poll()
        if code is None:
            if item.readiness is not None:
                item.readiness.tick(now)
                item.ready = item.readiness.healthy
            if item.liveness is not None and item.liveness.tick(now) and not item.liveness.healthy:
                log.info("liveness probe failed: killing %s/%s/%s", run.namespace, run.name, item.name)
                self._kill_group(item, signal.SIGKILL)
            return
        self._kill_group(item, signal.SIGKILL)  # the rest of the container's processes go with it
        sig = -code if code < 0 else 0
        exit_code = 128 + sig if sig else code
        message = ""
        policy = item.spec.get("terminationMessagePolicy", "File")
        if item.termination_file.exists():
            message = item.termination_file.read_text(errors="replace")[:4096]
        if not message and policy == "FallbackToLogsOnError" and exit_code != 0 and item.log_path.exists():
            message = "\n".join(item.log_path.read_text(errors="replace").splitlines()[-80:])[-2048:]
        terminated = podspec.terminated_state(
            exit_code, item.started_at, now_rfc3339(), f"testbed://{item.proc.pid}", message, sig
        )
        log.info("container %s/%s/%s exited with %d", run.namespace, run.name, item.name, exit_code)
        item.proc = None
        item.ready = False
        item.readiness = item.liveness = None
        policy = item.restart_policy(run.pod["spec"].get("restartPolicy", "Always"))
        restart = not deleting and (policy == "Always" or (policy == "OnFailure" and exit_code != 0))
        if restart:
            item.last_state = terminated
            backoff = min(10.0, 0.5 * 2 ** min(item.restart_count, 5))
            item.next_start = now + backoff
            item.state = podspec.waiting_state(
                "CrashLoopBackOff", f"back-off {backoff:.1f}s restarting failed container={item.name}"
            )
            item.restart_count += 1
        else:
            item.state = terminated
            item.done = True

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            obj = self.api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        return podspec.decode_object(kind, obj)

    def token(self, pod: Json, audience: str, expiration: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": max(600, expiration),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        try:
            answer = self.api.create(path, body)
        except KubeError as err:
            raise podspec.ConfigError(f"token for service account {account}: {err}") from err
        return str(answer["status"]["token"])

    def prepare_volumes(self, run: PodRun) -> None:
        for volume in run.pod["spec"].get("volumes") or []:
            files = podspec.volume_files(run.pod, volume, run.ip, self.lookup, self.token)
            if files is not None:
                podproc.write_volume(run.pod_dir / "volumes" / volume["name"], files)
        run.volumes_ready = True

    def launch(self, run: PodRun, item: Container) -> podproc.Launch:
        spec = item.spec
        base = {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": run.name,
            "POD_IP": run.ip,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": self.api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port,
        }
        env = podspec.container_env(run.pod, spec, run.ip, self.lookup)
        env = {**base, **images.image_env(str(spec.get("image", ""))), **env}
        argv = [podspec.expand(str(part), env) for part in (spec.get("command") or []) + (spec.get("args") or [])]
        if not argv:
            raise FileNotFoundError("the container has no command or args (the test bed cannot read images)")
        if podproc.find_executable(argv[0], env["PATH"]) is None:
            raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
        volumes = {volume["name"]: volume for volume in run.pod["spec"].get("volumes") or []}
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise podspec.ConfigError(f"volumeMount {mount['name']} names no volume")
            if podproc.hides_shared(mount["mountPath"], self.shared_dirs):
                log.info("%s/%s: %s not mounted at %s (the host's shared directory)", run.namespace, run.name,
                         mount["name"], mount["mountPath"])  # fmt: skip
                continue
            source = podproc.volume_source(run.pod_dir, self.root / "pvc", run.namespace, volume)
            if mount.get("subPath"):
                source = source / podspec.expand(mount["subPath"], env)
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
        item.termination_file.parent.mkdir(parents=True, exist_ok=True)
        item.termination_file.write_bytes(b"")
        return podproc.Launch(
            argv=argv,
            env=env,
            working_dir=spec.get("workingDir", ""),
            mounts=mounts,
            termination_file=item.termination_file,
            termination_path=spec.get("terminationMessagePath", "/dev/termination-log"),
            log_path=item.log_path,
        )

    def start_container(self, run: PodRun, item: Container) -> None:
        try:
            if not run.volumes_ready:
                self.prepare_volumes(run)
            problem = self.images.ensure(
                run.uid, str(item.spec.get("image", "")), item.spec.get("imagePullPolicy"), time.monotonic()
            )
            if problem is not None:
                if item.state.get("waiting", {}).get("reason") != problem.reason:
                    where = f"{run.namespace}/{run.name}/{item.name}"
                    log.info("image of %s: %s %s", where, problem.reason, problem.message)
                item.state = podspec.waiting_state(problem.reason, problem.message)
                item.next_start = time.monotonic() + problem.retry_in
                return
            launch = self.launch(run, item)
        except podspec.ConfigError as err:
            item.state = podspec.waiting_state("CreateContainerConfigError", str(err))
            item.next_start = time.monotonic() + RETRY_CONFIG
            return
        except (FileNotFoundError, OSError, ValueError) as err:
            item.state = podspec.waiting_state("CreateContainerError", str(err))
            item.next_start = time.monotonic() + RETRY_CONFIG
            return
        item.proc = podproc.spawn(launch)
        item.env = launch.env
        item.started_at = now_rfc3339()
        item.state = podspec.running_state(item.started_at)
        spec = item.spec
        item.ready = "readinessProbe" not in spec
        if "readinessProbe" in spec:
            item.readiness = ProbeRunner(
                spec["readinessProbe"], spec, run.ip, launch.env, self.probe_pool, healthy_at_start=False
            )
        if "livenessProbe" in spec:
            item.liveness = ProbeRunner(
                spec["livenessProbe"], spec, run.ip, launch.env, self.probe_pool, healthy_at_start=True
            )
        log.info("started %s/%s/%s pid %d: %s", run.namespace, run.name, item.name, item.proc.pid, launch.argv)

    def _kill_group(self, item: Container, sig: int) -> None:
        if item.proc is None:
            return
        try:
            os.killpg(item.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------------------ status

    def report(self, run: PodRun) -> None:
        """Patches the pod's status when it changed since the last report."""
        status = pod_status(run)
        comparable = {**status, "conditions": [(c["type"], c["status"]) for c in status["conditions"]]}
        if comparable == run.reported:
            return
        try:
            self.api.merge_patch(pod_path(run.namespace, run.name, "status"), {"status": status})
            run.reported = comparable
        except KubeError as err:
            if err.status == 404:
                run.gone = True
                for item in run.every():
                    self._kill_group(item, signal.SIGKILL)
            else:
                log.warning("status of %s/%s: %s", run.namespace, run.name, err)
