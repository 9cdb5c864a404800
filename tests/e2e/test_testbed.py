"""Self-tests of the e2e test bed: the API server, the controllers, the node agent and Helm.

They run against the bed (``tests/cluster``) or, unchanged, against an external cluster named by
``STREAMJOB_E2E_KUBECONFIG`` (or a ``kind-*`` context); the few that use node-agent helpers run on the
bed only. Pods run ``python3``: the test venv's on the bed, the ``python:3.12-slim`` image's elsewhere.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixtures import Kube
from tests.cluster.helm import Helm
from tests.cluster.kubeapi import KubeError, pod_path
from tests.cluster.node_agent import NodeAgent

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
IMAGE = "python:3.12-slim"
CHART = Path(__file__).resolve().parents[1] / "cluster" / "testdata" / "hello-chart"


def python_pod(name: str, script: str, **extra: Any) -> Json:
    """A restartPolicy=Never pod whose one container runs ``python3 -c script``."""
    container: Json = {"name": "main", "image": IMAGE, "command": ["python3", "-c", script]}
    container.update(extra.pop("container", {}))
    spec: Json = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [container]}
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def terminated(pod: Json) -> Json:
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def test_crd_structural_schema_rejects_invalid_objects(kube: Kube, kube_namespace: str) -> None:
    plural = f"gadgets{uuid.uuid4().hex[:6]}"
    group = "testbed.streamjob.dev"
    crd: Json = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural.capitalize()[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "mode": {"type": "string", "enum": ["fast", "safe"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube.raw.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    try:

        def established() -> bool:
            got = kube.raw.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{group}")
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in got.get("status", {}).get("conditions") or []
            )

        kube.wait_for(established, 30, "the CRD to be established")
        path = f"/apis/{group}/v1/namespaces/{kube_namespace}/{plural}"
        kind = crd["spec"]["names"]["kind"]
        good = {
            "apiVersion": f"{group}/v1",
            "kind": kind,
            "metadata": {"name": "good"},
            "spec": {"size": 3, "mode": "safe"},
        }
        kube.wait_for(lambda: kube.raw.create(path, good), 30, "the custom resource to be served")
        for bad_spec in ({"size": 0}, {"size": "big"}, {"mode": "fast"}, {"size": 2, "mode": "reckless"}):
            bad = {**good, "metadata": {"name": "bad"}, "spec": bad_spec}
            with pytest.raises(KubeError) as caught:
                kube.raw.create(path, bad)
            assert caught.value.status == 422, caught.value.body
        assert kube.raw.get(f"{path}/good")["spec"]["size"] == 3
    finally:
        kube.raw.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{group}")


def test_pod_with_env_and_volumes_succeeds(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    ns = kube_namespace
    kube.raw.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"mode": "exactly-once", "job.json": '{"parallelism": 2}'},
        },
    )
    kube.raw.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t"}},
    )
    script = "\n".join(
        [
            "import json, os",
            "with open('/scratch/out.txt', 'w') as f: f.write('written by ' + os.environ['MY_NAME'])",
            "report = {key: os.environ.get(key) for key in ('MY_NAME', 'MY_NAMESPACE', 'MY_IP', 'PASSWORD', 'MODE')}",
            "report['file'] = open('/scratch/out.txt').read()",
            "report['config'] = json.load(open('/etc/job/job.json'))",
            "report['secret'] = open('/etc/creds/password').read()",
            "report['greeting'] = os.environ.get('GREETING')",
            "print('report', json.dumps(report))",
            "open('/dev/termination-log', 'w').write(json.dumps(report))",
        ]
    )

    def field(path: str) -> Json:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    container = {
        "env": [
            {"name": "MY_NAME", **field("metadata.name")},
            {"name": "MY_NAMESPACE", **field("metadata.namespace")},
            {"name": "MY_IP", **field("status.podIP")},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "GREETING", "value": "hi $(MY_NAME)"},
        ],
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "config", "mountPath": "/etc/job", "readOnly": True},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        ],
    }
    volumes = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "config", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
    ]
    kube.create_pod(ns, python_pod("writer", script, container=container, volumes=volumes))
    pod = kube.wait_pod_phase(ns, "writer", "Succeeded", "Failed", timeout=120)
    state = terminated(pod)
    assert pod["status"]["phase"] == "Succeeded", state
    assert state["exitCode"] == 0 and state["reason"] == "Completed"
    assert state["startedAt"] and state["finishedAt"] and pod["status"]["startTime"]
    report = json.loads(state["message"])
    assert report == {
        "MY_NAME": "writer",
        "MY_NAMESPACE": ns,
        "MY_IP": pod["status"]["podIP"],
        "PASSWORD": "s3cr3t",
        "MODE": "exactly-once",
        "file": "written by writer",
        "config": {"parallelism": 2},
        "secret": "s3cr3t",
        "greeting": "hi writer",
    }
    if pod_runtime is not None:
        assert pod["status"]["podIP"].startswith("127.")
        assert pod_runtime.pod_ip(ns, "writer") == pod["status"]["podIP"]
        assert "report {" in pod_runtime.read_log(ns, "writer")


def test_pod_exit_code_3_fails(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    kube.create_pod(kube_namespace, python_pod("exits-3", "import sys; print('bye'); sys.exit(3)"))
    pod = kube.wait_pod_phase(kube_namespace, "exits-3", "Succeeded", "Failed", timeout=120)
    assert pod["status"]["phase"] == "Failed"
    state = terminated(pod)
    assert state["exitCode"] == 3 and state["reason"] == "Error"


def test_kubectl_logs_reads_a_pods_output_after_it_ended(
    kube: Kube, kube_namespace: str, node_agent: NodeAgent
) -> None:
    script = "import sys\nfor i in range(50): print(f'line {i}')\nprint('bye', file=sys.stderr); sys.exit(3)"
    kube.create_pod(kube_namespace, python_pod("talker", script))
    kube.wait_pod_phase(kube_namespace, "talker", "Failed", timeout=120)
    whole = kube.kubectl("logs", "-n", kube_namespace, "talker").stdout.splitlines()
    assert whole[0] == "line 0" and whole[-1] == "bye" and len(whole) == 51, whole[:3]
    tail = kube.kubectl("logs", "-n", kube_namespace, "talker", "--tail", "2").stdout.splitlines()
    assert tail == ["line 49", "bye"], tail
    missing = kube.kubectl("logs", "-n", kube_namespace, "nosuchpod", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()


def test_owner_deletion_garbage_collects_dependents(kube: Kube, kube_namespace: str) -> None:
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    owner = kube.raw.create(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    for name in ("dependent-a", "dependent-b"):
        kube.raw.create(
            path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [reference]}}
        )
    kube.raw.delete(f"{path}/owner")
    kube.wait_gone(f"{path}/dependent-a", timeout=60)
    kube.wait_gone(f"{path}/dependent-b", timeout=60)


def test_deployment_pod_runs_and_becomes_ready(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                            "livenessProbe": {
                                "tcpSocket": {"port": 8080},
                                "periodSeconds": 2,
                                "initialDelaySeconds": 5,
                            },
                        }
                    ]
                },
            },
        },
    }
    kube.raw.create(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments", deployment)

    def available() -> bool:
        got = kube.raw.get(f"/apis/apps/v1/namespaces/{kube_namespace}/deployments/web")
        return int(got.get("status", {}).get("availableReplicas", 0)) == 1

    kube.wait_for(available, 120, "the Deployment to have one available replica")
    pods = kube.raw.get(pod_path(kube_namespace), labelSelector="app=web")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and "running" in status["state"]
    if pod_runtime is not None:
        assert pod_runtime.pid(kube_namespace, pod["metadata"]["name"]) is not None


def test_helm_lint_and_install(helm: Helm, kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    lint = helm.lint(CHART, "--strict")
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    helm.install("hello", CHART, kube_namespace, "--wait", "--timeout", "3m")
    listing = json.loads(helm.run("list", "--namespace", kube_namespace, "--output", "json").stdout)
    assert [(item["name"], item["status"]) for item in listing] == [("hello", "deployed")]
    cm = kube.raw.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/hello-greeting")
    assert cm["data"]["greeting"] == "hello from helm"
    helm.uninstall("hello", kube_namespace)


# ---------------------------------------------------------------- node-agent specifics (bed only)


def test_missing_command_reports_waiting_reason(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    pod = python_pod("no-binary", "")
    pod["spec"]["containers"][0]["command"] = ["streamjob-no-such-command"]
    kube.create_pod(kube_namespace, pod)

    def waiting() -> Json | None:
        got = kube.pod(kube_namespace, "no-binary")
        for status in got.get("status", {}).get("containerStatuses") or []:
            if status["state"].get("waiting", {}).get("reason") == "CreateContainerError":
                return dict(status["state"]["waiting"])
        return None

    state = kube.wait_for(waiting, 60, "the CreateContainerError waiting reason")
    assert "executable file not found" in state["message"]
    assert kube.pod(kube_namespace, "no-binary")["status"]["phase"] == "Pending"


def test_missing_secret_reports_config_error(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x"}}}]
    kube.create_pod(kube_namespace, python_pod("no-secret", "pass", container={"env": env}))

    def reason() -> str | None:
        got = kube.pod(kube_namespace, "no-secret")
        for status in got.get("status", {}).get("containerStatuses") or []:
            waiting = status["state"].get("waiting", {})
            if waiting.get("reason") == "CreateContainerConfigError":
                return str(waiting["message"])
        return None

    assert "absent" in kube.wait_for(reason, 60, "CreateContainerConfigError")


def test_deletion_sends_sigterm_then_removes_pod(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    script = "\n".join(
        [
            "import signal, sys, time",
            "def stop(*_):",
            "    print('got SIGTERM', flush=True); sys.exit(0)",
            "signal.signal(signal.SIGTERM, stop)",
            "print('serving', flush=True)",
            "time.sleep(600)",
        ]
    )
    kube.create_pod(kube_namespace, python_pod("graceful", script))
    kube.wait_pod_phase(kube_namespace, "graceful", "Running", timeout=60)
    kube.wait_for(lambda: "serving" in node_agent.read_log(kube_namespace, "graceful"), 30, "the pod to serve")
    kube.raw.delete(pod_path(kube_namespace, "graceful"), {"gracePeriodSeconds": 30})
    kube.wait_gone(pod_path(kube_namespace, "graceful"), timeout=30)
    assert "got SIGTERM" in node_agent.read_log(kube_namespace, "graceful")


def test_deletion_kills_after_grace_period(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    )
    kube.create_pod(kube_namespace, python_pod("stubborn", script))
    kube.wait_pod_phase(kube_namespace, "stubborn", "Running", timeout=60)
    kube.wait_for(lambda: "up" in node_agent.read_log(kube_namespace, "stubborn"), 30, "the pod to start")
    started = time.monotonic()
    kube.raw.delete(pod_path(kube_namespace, "stubborn"), {"gracePeriodSeconds": 2})
    kube.wait_gone(pod_path(kube_namespace, "stubborn"), timeout=30)
    assert 1.5 <= time.monotonic() - started < 20


def test_crash_helper_fails_the_pod(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    kube.create_pod(kube_namespace, python_pod("victim", "import time; print('up', flush=True); time.sleep(600)"))
    kube.wait_pod_phase(kube_namespace, "victim", "Running", timeout=60)
    ip = node_agent.pod_ip(kube_namespace, "victim")
    assert kube.pod(kube_namespace, "victim")["status"]["podIP"] == ip
    node_agent.crash(kube_namespace, "victim")
    pod = kube.wait_pod_phase(kube_namespace, "victim", "Failed", timeout=30)
    state = terminated(pod)
    assert state["exitCode"] == 137 and state["signal"] == 9


def test_restart_policy_always_restarts_after_crash(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    pod = python_pod("phoenix", "import time; print('up', flush=True); time.sleep(600)", restartPolicy="Always")
    kube.create_pod(kube_namespace, pod)
    kube.wait_pod_phase(kube_namespace, "phoenix", "Running", timeout=60)
    kube.wait_for(lambda: node_agent.pid(kube_namespace, "phoenix"), 30, "the process")
    node_agent.crash(kube_namespace, "phoenix")

    def restarted() -> Json | None:
        status = kube.pod(kube_namespace, "phoenix")["status"]["containerStatuses"][0]
        return status if status["restartCount"] == 1 and "running" in status["state"] else None

    status = kube.wait_for(restarted, 30, "the container to be restarted")
    assert status["lastState"]["terminated"]["exitCode"] == 137


def test_init_containers_run_first_in_order(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    def step(name: str, text: str) -> Json:
        script = f"open('/steps/log', 'a').write({text!r})"
        return {
            "name": name,
            "image": IMAGE,
            "command": ["python3", "-c", script],
            "volumeMounts": [{"name": "work", "mountPath": "/steps"}],
        }

    pod = python_pod(
        "initialised",
        "open('/dev/termination-log', 'w').write(open('/steps/log').read())",
        container={"volumeMounts": [{"name": "work", "mountPath": "/steps"}]},
        initContainers=[step("first", "1"), step("second", "2")],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    kube.create_pod(kube_namespace, pod)
    got = kube.wait_pod_phase(kube_namespace, "initialised", "Succeeded", "Failed", timeout=120)
    assert terminated(got)["message"] == "12"
    inits = got["status"]["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["exitCode"]) for s in inits] == [("first", 0), ("second", 0)]


def test_failed_init_container_fails_the_pod(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    failing = {"name": "broken", "image": IMAGE, "command": ["python3", "-c", "raise SystemExit(7)"]}
    kube.create_pod(kube_namespace, python_pod("never-starts", "print('must not run')", initContainers=[failing]))
    got = kube.wait_pod_phase(kube_namespace, "never-starts", "Succeeded", "Failed", timeout=120)
    assert got["status"]["phase"] == "Failed"
    assert got["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert "terminated" not in got["status"]["containerStatuses"][0]["state"]


# ---------------------------------------------------------------- images


def waiting_reasons(kube: Kube, namespace: str, name: str, until: str, timeout: float = 60.0) -> list[Json]:
    """Every status the pod's first container reports, from creation until it waits with ``until``.

    Read from a watch (not by polling), so no short-lived state is missed; each entry is the
    container status together with the pod's phase under ``"phase"``.
    """
    seen: list[Json] = []
    deadline = time.monotonic() + timeout
    path = f"/api/v1/namespaces/{namespace}/pods"
    version = ""
    while time.monotonic() < deadline:
        if not version:
            listing = kube.raw.get(path)
            version = listing["metadata"]["resourceVersion"]
            events: Any = [{"type": "ADDED", "object": p} for p in listing["items"]]
        else:
            events = kube.raw.watch(path, version, timeout_seconds=max(1, int(deadline - time.monotonic())))
        for event in events:
            pod = event.get("object") or {}
            version = pod.get("metadata", {}).get("resourceVersion", version)
            if event.get("type") == "BOOKMARK" or pod.get("metadata", {}).get("name") != name:
                continue
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if not statuses:
                continue
            seen.append({**statuses[0], "phase": pod["status"].get("phase")})
            if statuses[0]["state"].get("waiting", {}).get("reason") == until:
                return seen
    raise AssertionError(f"pod {namespace}/{name} never waited with {until}; statuses seen: {seen}")


def never_started(statuses: list[Json]) -> None:
    """Asserts that no status shows the container started: Pending, waiting, no container ID."""
    for status in statuses:
        assert status["phase"] == "Pending", status
        assert set(status["state"]) == {"waiting"}, status
        assert status["started"] is False and status["restartCount"] == 0, status
        assert "containerID" not in status and not status.get("lastState"), status


def test_unknown_image_errs_then_backs_off_and_never_starts(
    kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None
) -> None:
    # `.invalid` is a reserved top-level domain: on kind the pull fails too, on the bed the image is unknown.
    image = f"registry.streamjob.invalid/absent:{uuid.uuid4().hex[:8]}"
    kube.create_pod(kube_namespace, python_pod("unpulled", "print('must not run')", container={"image": image}))
    statuses = waiting_reasons(kube, kube_namespace, "unpulled", "ImagePullBackOff")
    reasons = [s["state"]["waiting"]["reason"] for s in statuses]
    reasons = [r for i, r in enumerate(reasons) if i == 0 or reasons[i - 1] != r]
    assert reasons[-2:] == ["ErrImagePull", "ImagePullBackOff"], reasons
    assert set(reasons) <= {"ContainerCreating", "ErrImagePull", "ImagePullBackOff"}, reasons
    never_started(statuses)
    assert statuses[-1]["state"]["waiting"]["message"].startswith(f'Back-off pulling image "{image}"')
    assert kube.pod(kube_namespace, "unpulled")["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    if pod_runtime is not None:
        errors = [
            s["state"]["waiting"]["message"] for s in statuses if s["state"]["waiting"]["reason"] == "ErrImagePull"
        ]
        assert errors[0] == (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found'
        )
        assert (
            statuses[-1]["state"]["waiting"]["message"]
            == f'Back-off pulling image "{image}": ErrImagePull: {errors[0]}'
        )
        assert not pod_runtime.started(kube_namespace, "unpulled")
        assert pod_runtime.read_log(kube_namespace, "unpulled") == ""


def test_invalid_image_name_is_reported(kube: Kube, kube_namespace: str, pod_runtime: NodeAgent | None) -> None:
    kube.create_pod(kube_namespace, python_pod("badname", "print('must not run')", container={"image": "Bad/Name:1"}))
    statuses = waiting_reasons(kube, kube_namespace, "badname", "InvalidImageName")
    never_started(statuses)
    assert statuses[-1]["state"]["waiting"]["message"].startswith('Failed to apply default image tag "Bad/Name:1"')


def test_image_pushed_later_is_pulled_after_the_back_off(
    kube: Kube, kube_namespace: str, node_agent: NodeAgent
) -> None:
    image = f"streamjob-testbed/late:{uuid.uuid4().hex[:8]}"
    kube.create_pod(kube_namespace, python_pod("late", "print('pulled at last')", container={"image": image}))
    never_started(waiting_reasons(kube, kube_namespace, "late", "ImagePullBackOff"))
    node_agent.images.push(image)
    try:
        pod = kube.wait_pod_phase(kube_namespace, "late", "Succeeded", "Failed", timeout=30)
        assert terminated(pod)["exitCode"] == 0
        assert node_agent.read_log(kube_namespace, "late") == "pulled at last\n"
        assert node_agent.images.present(image)
    finally:
        node_agent.images.remove(image)


def test_image_pull_policies(kube: Kube, kube_namespace: str, node_agent: NodeAgent) -> None:
    tag = uuid.uuid4().hex[:8]
    loaded, pushed = f"streamjob-testbed/loaded:{tag}", f"streamjob-testbed/pushed:{tag}"
    node_agent.images.load(loaded)  # on the node only (kind load), not in the registry
    node_agent.images.push(pushed)  # in the registry only
    cases = {
        "never-absent": (pushed, "Never", "ErrImageNeverPull"),
        "always-unregistered": (loaded, "Always", "ErrImagePull"),
        "ifnotpresent-loaded": (loaded, "IfNotPresent", None),
        "never-loaded": (loaded, "Never", None),
    }
    try:
        for name, (image, policy, _) in cases.items():
            container = {"image": image, "imagePullPolicy": policy}
            kube.create_pod(kube_namespace, python_pod(name, "print('ran')", container=container))
        for name, (image, _, reason) in cases.items():
            if reason is None:
                assert terminated(kube.wait_pod_phase(kube_namespace, name, "Succeeded", "Failed"))["exitCode"] == 0
                continue
            statuses = waiting_reasons(kube, kube_namespace, name, reason)
            never_started(statuses)
            if reason == "ErrImageNeverPull":
                message = f'Container image "{image}" is not present with pull policy of Never'
                assert statuses[-1]["state"]["waiting"]["message"] == message
            assert not node_agent.started(kube_namespace, name)
        assert not node_agent.images.present(pushed)  # Never does not pull
    finally:
        node_agent.images.remove(loaded)
        node_agent.images.remove(pushed)
