"""Builds the bare pods of an attempt: one JobMaster and ``workers`` worker pods.

Pods use ``restartPolicy: Never`` — the operator owns pod restarts (a crashed worker pod is replaced
by a new pod of the same attempt while its JobMaster redeploys the tasks; a failed JobMaster pod ends
the attempt) — and are owned by the StreamJob so that deleting it garbage-collects them. Workers are built only
once the JobMaster pod has an IP, which they get as a literal ``--jobmaster IP:PORT`` argument and
as ``JOBMASTER_ADDRESS``, so no cluster DNS is needed.

Hardened by default (``docs/security.md``): non-root user 10001 (the image's), seccomp
RuntimeDefault, a read-only root filesystem with an emptyDir at ``/tmp`` (``TMPDIR``; the slots'
work directories and local-recovery copies live there), no privilege escalation, every capability
dropped and no service-account token; the spec's ``securityContext`` /
``containerSecurityContext`` / ``automountServiceAccountToken`` are merged over these defaults
(``validation`` refuses what the operator's security policy does not permit). Both containers get
the job's secret as ``STREAMJOB_JOB_SECRET`` from the job's Secret (``secretKeyRef``). With
``spec.tls`` both mount its Secret read-only at ``TLS_DIR`` (``_mount_tls``); without it nothing changes.
"""

from __future__ import annotations

from typing import Any

from streamjob.operator.model.spec import PodOverrides, StreamJobSpec
from streamjob.operator.resources.configmap import Attempt
from streamjob.operator.resources.labels import (
    CONFIG_DIR,
    CONFIG_FILE,
    CONTROL_PORT,
    JOBMASTER,
    REST_PORT,
    TLS_DIR,
    WORKER,
    configmap_name,
    jobmaster_pod_name,
    labels_for,
    owner_reference,
    secret_name,
    worker_pod_name,
)
from streamjob.operator.resources.pod_template import container_named, merge, user_template, with_env
from streamjob.operator.resources.secret import JOB_SECRET_KEY
from streamjob.worker.config import TlsSettings
from streamjob.worker.protocol.auth import JOB_SECRET_ENV, JOB_SECRET_FILE_ENV
from streamjob.worker.protocol.tls import INTERNAL_TLS_ENVS, internal_tls_env

CONFIG_VOLUME = "job-config"
SCRATCH_VOLUME = "scratch"
TLS_VOLUME = "streamjob-tls"
SCRATCH_DIR = "/tmp"
RESERVED_VOLUMES = frozenset({CONFIG_VOLUME, SCRATCH_VOLUME, TLS_VOLUME})
RESERVED_MOUNT_PATHS = frozenset({CONFIG_DIR, SCRATCH_DIR, TLS_DIR})
RESERVED_ENV = frozenset(
    {
        "POD_IP",
        "POD_NAME",
        "POD_NAMESPACE",
        "JOBMASTER_ADDRESS",
        "STREAMJOB_S3_ENDPOINT",
        "STREAMJOB_S3_PATH_STYLE",
        JOB_SECRET_ENV,
        JOB_SECRET_FILE_ENV,
        *INTERNAL_TLS_ENVS,
    }
)
MAIN_CONTAINERS = frozenset({JOBMASTER, WORKER})
#: Fields of the template's main container that ``_pod`` merges with the operator's instead of replacing.
_MAIN_MERGED = frozenset({"env", "volumeMounts", "securityContext", "resources"})
RUN_AS_USER = 10001  # the Dockerfile's USER
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_context(overrides: PodOverrides, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults, the template's pod ``securityContext`` over them, the spec's ``securityContext`` over that."""
    merged: dict[str, Any] = merge(merge(DEFAULT_POD_SECURITY_CONTEXT, template or {}), overrides.security_context)
    return merged


def container_security_context(overrides: PodOverrides, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults, the template container's ``securityContext``, then the spec's ``containerSecurityContext``.

    Maps merge key by key (``merge``), so adding a capability keeps ``drop: [ALL]``.
    """
    merged: dict[str, Any] = merge(
        merge(DEFAULT_CONTAINER_SECURITY_CONTEXT, template or {}), overrides.container_security_context
    )
    return merged


def hardened_container(container: dict[str, Any]) -> dict[str, Any]:
    """A template's sidecar or init container with the default ``securityContext`` under its own."""
    return {**container, "securityContext": merge(DEFAULT_CONTAINER_SECURITY_CONTEXT, container.get("securityContext"))}


def _security_env(at: Attempt) -> list[dict[str, Any]]:
    """The job's secret by reference to its Secret (never a literal), and the scratch directory."""
    ref = {"name": secret_name(at.job), "key": JOB_SECRET_KEY}
    return [
        {"name": JOB_SECRET_ENV, "valueFrom": {"secretKeyRef": ref}},
        {"name": "TMPDIR", "value": SCRATCH_DIR},
    ]


def _harden(at: Attempt, overrides: PodOverrides, template: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    """Adds the security defaults (under the template's and the spec's settings) and the scratch volume."""
    container = pod_spec["containers"][0]
    main = container_named(template, container["name"])
    container["securityContext"] = container_security_context(overrides, main.get("securityContext"))
    container["volumeMounts"].append({"name": SCRATCH_VOLUME, "mountPath": SCRATCH_DIR})
    container["env"] = with_env(_security_env(at), container["env"])  # first, so the spec's env can set TMPDIR
    pod_spec["volumes"].append({"name": SCRATCH_VOLUME, "emptyDir": {}})
    pod_spec["securityContext"] = pod_security_context(overrides, pod_spec.get("securityContext"))
    automount = overrides.automount_service_account_token
    if automount is None:
        automount = pod_spec.get("automountServiceAccountToken")
    pod_spec["automountServiceAccountToken"] = bool(automount)
    pod_spec.setdefault("enableServiceLinks", False)  # no env var per Service of the namespace (a template may set it)
    for key, value in (
        ("hostNetwork", overrides.host_network),
        ("hostPID", overrides.host_pid),
        ("hostIPC", overrides.host_ipc),
    ):
        if value is not None:
            pod_spec[key] = value


def _env(spec: StreamJobSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    s3 = spec.storage.s3
    if s3.endpoint:
        env.append({"name": "STREAMJOB_S3_ENDPOINT", "value": s3.endpoint})
    if s3.path_style is not None:
        env.append({"name": "STREAMJOB_S3_PATH_STYLE", "value": "true" if s3.path_style else "false"})
    if s3.region:
        env += [{"name": "AWS_REGION", "value": s3.region}, {"name": "AWS_DEFAULT_REGION", "value": s3.region}]
    secret = s3.credentials_secret
    if secret is not None:
        for var, key in (
            ("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key),
        ):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}})
    return env


def _mount_tls(spec: StreamJobSpec, pod_spec: dict[str, Any]) -> None:
    """``spec.tls``: its Secret read-only at ``TLS_DIR``; with ``internal``, the slots' ``STREAMJOB_INTERNAL_TLS_*``.

    The slots need the files before their Deploy message (to reach the control port), so they get them
    by environment; the JobMaster reads them from job.json (``render_job_config``).
    """
    if spec.tls is None:
        return
    container = pod_spec["containers"][0]
    container["volumeMounts"].append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
    secret = {"secretName": spec.tls.secret_name, "defaultMode": 0o440}  # group-readable: fsGroup is the user's
    pod_spec["volumes"].append({"name": TLS_VOLUME, "secret": secret})
    if spec.tls.internal:
        env = internal_tls_env(TlsSettings.from_dir(TLS_DIR))
        container["env"] = [*container["env"], *({"name": k, "value": v} for k, v in env.items())]


def _pod(at: Attempt, name: str, component: str, container: dict[str, Any]) -> dict[str, Any]:
    """The pod of ``component``: the user's templates, the spec's overrides over them, the operator's parts over all."""
    overrides: PodOverrides = at.spec.job_manager if component == JOBMASTER else at.spec.task_manager
    template = user_template(at.spec, overrides)
    tpl_spec: dict[str, Any] = template.get("spec") or {}
    main = container_named(template, component)
    container = {
        **{key: value for key, value in main.items() if key not in _MAIN_MERGED},
        **container,
        "image": at.spec.image,
        "imagePullPolicy": at.spec.image_pull_policy.value,
        # The JobMaster writes why the job failed (protocol/termination.py); without it, the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": with_env(container["env"], main.get("env") or [], overrides.env),
        "volumeMounts": merge(
            main.get("volumeMounts") or [],
            [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}, *overrides.volume_mounts],
            "volumeMounts",
        ),
    }
    resources = merge(main.get("resources") or {}, overrides.resources)
    if resources:
        container["resources"] = resources
    # A template's container named like a role's main container is that role's (spec.podTemplate has both).
    sidecars = [hardened_container(c) for c in tpl_spec.get("containers") or [] if c.get("name") not in MAIN_CONTAINERS]
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 10,
        **{key: value for key, value in tpl_spec.items() if key != "containers"},
        "restartPolicy": "Never",
        "containers": [container, *sidecars],
        "volumes": merge(
            tpl_spec.get("volumes") or [],
            [{"name": CONFIG_VOLUME, "configMap": {"name": configmap_name(at.job, at.attempt)}}, *overrides.volumes],
            "volumes",
        ),
    }
    if tpl_spec.get("initContainers"):
        pod_spec["initContainers"] = [hardened_container(c) for c in tpl_spec["initContainers"]]
    optional: dict[str, Any] = {
        "serviceAccountName": at.spec.service_account,
        "nodeSelector": overrides.node_selector,
        "tolerations": overrides.tolerations,
        "affinity": overrides.affinity,
        "priorityClassName": overrides.priority_class_name,
    }
    for key, value in optional.items():
        if value:
            pod_spec[key] = merge(pod_spec.get(key), value, key)
    _mount_tls(at.spec, pod_spec)
    _harden(at, overrides, template, pod_spec)
    tpl_meta: dict[str, Any] = template.get("metadata") or {}
    labels = {
        **(tpl_meta.get("labels") or {}),
        **overrides.labels,
        **labels_for(at.job, component, attempt=at.attempt, job_id=at.job_id),
    }
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": at.job.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(at.job)],
    }
    annotations = {**(tpl_meta.get("annotations") or {}), **overrides.annotations}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def build_jobmaster_pod(at: Attempt) -> dict[str, Any]:
    """The JobMaster pod: ``streamjob jobmaster --config /etc/streamjob/job.json``, REST on 8081, control on 6123.

    During a restart backoff it also gets ``--hold-deploy SECONDS`` (the backoff left): it starts,
    reads its restore point and accepts the slots, and deploys the tasks once the backoff is over.
    """
    probe: dict[str, Any] = {"httpGet": {"path": "/health", "port": "rest"}, "periodSeconds": 5}
    if at.spec.tls and at.spec.tls.rest:
        probe["httpGet"]["scheme"] = "HTTPS"  # the kubelet does not verify the certificate
    command = ["streamjob", "jobmaster", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    if at.hold_deploy_s > 0:
        command += ["--hold-deploy", f"{at.hold_deploy_s:g}"]
    container = {
        "name": JOBMASTER,
        "command": command,
        "ports": [
            {"name": "rest", "containerPort": REST_PORT, "protocol": "TCP"},
            {"name": "control", "containerPort": CONTROL_PORT, "protocol": "TCP"},
        ],
        "env": _env(at.spec),
        "readinessProbe": {**probe, "initialDelaySeconds": 1, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
    }
    return _pod(at, jobmaster_pod_name(at.job, at.attempt), JOBMASTER, container)


def build_worker_pods(at: Attempt, jobmaster_ip: str) -> list[dict[str, Any]]:
    """The worker pods, each told the JobMaster's control address ``IP:6123``: ``workers`` plus the standby ones.

    Standby pods are worker pods like the others: whichever slots register after the attempt has all
    its slots stay idle as the JobMaster's spares (``worker/jobmaster/slots.py``).
    """
    return [
        build_worker_pod(at, jobmaster_ip, worker_pod_name(at.job, at.attempt, index))
        for index in range(at.spec.worker_pods)
    ]


def build_worker_pod(at: Attempt, jobmaster_ip: str, name: str) -> dict[str, Any]:
    """One worker pod named ``name`` (a replacement of a crashed one has its own name: ``reconciler.workers``)."""
    address = f"{jobmaster_ip}:{CONTROL_PORT}"
    container = {
        "name": WORKER,
        "command": ["streamjob", "worker", "--jobmaster", address, "--slots", str(at.spec.task_slots)],
        "env": [*_env(at.spec), {"name": "JOBMASTER_ADDRESS", "value": address}],
    }
    return _pod(at, name, WORKER, container)
