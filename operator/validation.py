"""User-facing checks of a StreamJob spec beyond what the CRD schema and its CEL rules catch (pure).

``parse_spec`` turns pydantic errors into ``spec.field: message`` lines; ``validate`` checks names,
reserved labels and env vars, URIs and that the runtime accepts the rendered job config;
``validate_change`` refuses changes that would silently drop or corrupt state; ``security_problems``
refuses pod settings the operator's ``SecurityPolicy`` (chart values ``security.*``) does not
permit, naming the field and the value that would permit it. Pod templates (``spec.podTemplate``,
``spec.{jobManager,taskManager}.podTemplate``) are checked field by field against the Kubernetes
PodTemplateSpec (unknown fields and wrong types), for operator-owned and reserved fields, and every
container and the pod against the same policy. The controller reports the messages
in ``status.error`` and as a Warning event; nothing is deployed meanwhile.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from streamjob.operator.cron import CronError, parse_cron
from streamjob.operator.model.pod_template_schema import field_problems
from streamjob.operator.model.spec import PodOverrides, StreamJobSpec, UpgradeMode
from streamjob.operator.resources.configmap import Attempt, render_job_config
from streamjob.operator.resources.labels import JOBMASTER, RESERVED_PREFIXES, WORKER, JobRef
from streamjob.operator.resources.pod_template import merge, owned_field_problems
from streamjob.operator.resources.pods import (
    DEFAULT_CONTAINER_SECURITY_CONTEXT,
    DEFAULT_POD_SECURITY_CONTEXT,
    MAIN_CONTAINERS,
    RESERVED_ENV,
    RESERVED_MOUNT_PATHS,
    RESERVED_VOLUMES,
    container_security_context,
    pod_security_context,
)
from streamjob.operator.settings import SecurityPolicy

MAX_NAME = 50
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SNAPSHOT_URI = re.compile(r"^(s3://[^/]+/.+|file:///.+)$")


def describe(err: ValidationError) -> list[str]:
    """One ``spec.path: message`` line per pydantic error."""
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        lines.append(f"spec.{where}: {item['msg']}" if where else f"spec: {item['msg']}")
    return lines


def parse_spec(raw: object) -> tuple[StreamJobSpec | None, list[str]]:
    """The parsed spec, or None and the reasons it does not parse."""
    try:
        return StreamJobSpec.parse(raw), []
    except ValidationError as err:
        return None, describe(err)


def _pod_overrides(spec: StreamJobSpec) -> list[str]:
    problems = []
    for role, overrides in (("jobManager", spec.job_manager), ("taskManager", spec.task_manager)):
        for label in overrides.labels:
            if label.startswith(RESERVED_PREFIXES):
                problems.append(f"spec.{role}.labels: {label!r} is reserved for the operator")
        for entry in overrides.env:
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                problems.append(f"spec.{role}.env: every entry needs a name ({entry!r})")
            elif name in RESERVED_ENV:
                problems.append(f"spec.{role}.env: {name} is set by the operator and cannot be overridden")
        for index, volume in enumerate(overrides.volumes):
            if volume.get("name") in RESERVED_VOLUMES:
                problems.append(f"spec.{role}.volumes[{index}].name: {volume.get('name')!r} is used by the operator")
        for index, mount in enumerate(overrides.volume_mounts):
            if mount.get("mountPath") in RESERVED_MOUNT_PATHS:
                problems.append(
                    f"spec.{role}.volumeMounts[{index}].mountPath: {mount.get('mountPath')} is mounted by the operator"
                )
        unknown = set(overrides.resources) - {"requests", "limits", "claims"}
        if unknown:
            problems.append(f"spec.{role}.resources: unknown keys {sorted(unknown)}; use requests and limits")
    return problems


def _templates(spec: StreamJobSpec) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """Each pod template of the spec: its path, itself, and the main containers it applies to."""
    found = [
        ("spec.podTemplate", spec.pod_template, (JOBMASTER, WORKER)),
        ("spec.jobManager.podTemplate", spec.job_manager.pod_template, (JOBMASTER,)),
        ("spec.taskManager.podTemplate", spec.task_manager.pod_template, (WORKER,)),
    ]
    return [(where, template, mains) for where, template, mains in found if template]


def _template_problems(
    where: str, template: dict[str, Any], mains: tuple[str, ...], policy: SecurityPolicy
) -> list[str]:
    """Unknown fields, wrong types, operator-owned and reserved fields, and the security policy, of one template."""
    problems = field_problems(template, where)
    if problems:
        return problems  # the checks below read the template's shape
    for main in mains:
        problems += [p for p in owned_field_problems(template, where, main) if p not in problems]
    for label in (template.get("metadata") or {}).get("labels") or {}:
        if label.startswith(RESERVED_PREFIXES):
            problems.append(f"{where}.metadata.labels: {label!r} is reserved for the operator")
    pod = template.get("spec") or {}
    for index, volume in enumerate(pod.get("volumes") or []):
        if volume.get("name") in RESERVED_VOLUMES:
            problems.append(f"{where}.spec.volumes[{index}].name: {volume['name']!r} is used by the operator")
    seen: set[object] = set()
    for list_field in ("containers", "initContainers", "volumes"):
        if list_field == "volumes":
            seen = set()  # volumes have their own names
        for index, item in enumerate(pod.get(list_field) or []):
            if list_field == "volumes" and not item.get("name"):
                problems.append(f"{where}.spec.volumes[{index}].name: every volume needs a name")
            elif item.get("name") and item["name"] in seen:
                problems.append(f"{where}.spec.{list_field}[{index}].name: {item['name']!r} is used twice")
            seen.add(item.get("name"))
    for list_field in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(list_field) or []):
            for number, entry in enumerate(container.get("env") or []):
                if not entry.get("name"):
                    problems.append(f"{where}.spec.{list_field}[{index}].env[{number}].name: every entry needs a name")
    for index, container in enumerate(pod.get("containers") or []):
        if container.get("name") in MAIN_CONTAINERS - set(mains):
            problems.append(
                f"{where}.spec.containers[{index}].name: {container['name']!r} names the other role's main container; "
                "give the sidecar another name"
            )
        if container.get("name") not in mains:
            continue
        path = f"{where}.spec.containers[{index}]"
        for number, entry in enumerate(container.get("env") or []):
            if entry.get("name") in RESERVED_ENV:
                problems.append(
                    f"{path}.env[{number}]: {entry['name']} is set by the operator and cannot be overridden"
                )
        for number, mount in enumerate(container.get("volumeMounts") or []):
            if mount.get("mountPath") in RESERVED_MOUNT_PATHS:
                problems.append(
                    f"{path}.volumeMounts[{number}].mountPath: {mount['mountPath']} is mounted by the operator"
                )
    return problems + _template_security(where, template, policy)


def _refused(field: str, value: str) -> str:
    return f"{field} is not allowed; set operator value {value} to permit it"


#: SELinux types a container may run as without ``security.allowPrivileged`` (Pod Security "baseline").
SELINUX_TYPES = frozenset({"container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def _pod_context_problems(where: str, context: dict[str, Any], policy: SecurityPolicy) -> list[str]:
    """A pod ``securityContext`` (``where`` is its path) that lifts confinement or runs as root."""
    problems = []
    if not policy.allow_privileged:
        problems += _confinement_problems(where, context)
    if not policy.allow_run_as_root:
        problems += _root_problems(where, context)
    return problems


def _container_context_problems(where: str, context: dict[str, Any], policy: SecurityPolicy) -> list[str]:
    """A container ``securityContext`` (``where`` is its path) beyond the policy (Pod Security "baseline")."""
    permit = "security.allowPrivileged=true"
    problems = []
    if not policy.allow_privileged:
        if context.get("privileged"):
            problems.append(_refused(f"{where}.privileged", permit))
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}.allowPrivilegeEscalation must be false; set operator value {permit} to permit it")
        if context.get("procMount", "Default") != "Default":
            problems.append(_refused(f"{where}.procMount={context['procMount']}", permit))
        problems += _confinement_problems(where, context)
    caps = context.get("capabilities")
    added = caps.get("add") if isinstance(caps, dict) else None
    for index, cap in enumerate(added or []):
        if str(cap).upper().removeprefix("CAP_") not in {c.upper() for c in policy.allowed_capabilities}:
            allowed = ",".join([*policy.allowed_capabilities, str(cap)])
            problems.append(
                _refused(f"{where}.capabilities.add[{index}] ({cap})", f"security.allowedCapabilities={{{allowed}}}")
            )
    if not policy.allow_run_as_root:
        problems += _root_problems(where, context)
    return problems


def _confinement_problems(where: str, context: dict[str, Any]) -> list[str]:
    permit = "security.allowPrivileged=true"
    problems = []
    for profile in ("seccompProfile", "appArmorProfile"):
        kind = (context.get(profile) or {}).get("type")
        if kind == "Unconfined":
            problems.append(_refused(f"{where}.{profile}.type=Unconfined", permit))
    selinux = (context.get("seLinuxOptions") or {}).get("type")
    if selinux and selinux not in SELINUX_TYPES:
        problems.append(_refused(f"{where}.seLinuxOptions.type={selinux}", permit))
    return problems


def _root_problems(where: str, context: dict[str, Any]) -> list[str]:
    problems = []
    if context.get("runAsUser") == 0:
        problems.append(_refused(f"{where}.runAsUser=0", "security.allowRunAsRoot=true"))
    if context.get("runAsNonRoot") is False:
        problems.append(_refused(f"{where}.runAsNonRoot=false", "security.allowRunAsRoot=true"))
    return problems


def _host_problems(where: str, pod: dict[str, Any], volumes: list[Any], policy: SecurityPolicy) -> list[str]:
    """The hostPath volumes and host namespaces of a pod spec (or the spec's overrides) at ``where``."""
    problems = []
    if not policy.allow_host_path:
        for index, volume in enumerate(volumes):
            if isinstance(volume, dict) and "hostPath" in volume:
                problems.append(_refused(f"{where}.volumes[{index}].hostPath", "security.allowHostPath=true"))
    if not policy.allow_host_namespaces:
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(field):
                problems.append(_refused(f"{where}.{field}", "security.allowHostNamespaces=true"))
    return problems


def _role_security(role: str, overrides: PodOverrides, policy: SecurityPolicy) -> list[str]:
    where = f"spec.{role}"
    hosts = {"hostNetwork": overrides.host_network, "hostPID": overrides.host_pid, "hostIPC": overrides.host_ipc}
    return [
        *_host_problems(where, hosts, overrides.volumes, policy),
        *_pod_context_problems(f"{where}.securityContext", pod_security_context(overrides), policy),
        *_container_context_problems(
            f"{where}.containerSecurityContext", container_security_context(overrides), policy
        ),
    ]


def _template_security(where: str, template: dict[str, Any], policy: SecurityPolicy) -> list[str]:
    """A pod template's pod and container settings, each over the operator's defaults, against the policy."""
    pod: dict[str, Any] = template.get("spec") or {}
    problems = _host_problems(f"{where}.spec", pod, pod.get("volumes") or [], policy)
    if pod.get("securityContext"):
        context = merge(DEFAULT_POD_SECURITY_CONTEXT, pod["securityContext"])
        problems += _pod_context_problems(f"{where}.spec.securityContext", context, policy)
    for list_field in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(list_field) or []):
            context = merge(DEFAULT_CONTAINER_SECURITY_CONTEXT, container.get("securityContext"))
            path = f"{where}.spec.{list_field}[{index}].securityContext"
            problems += _container_context_problems(path, context, policy)
    return problems


def security_problems(spec: StreamJobSpec, policy: SecurityPolicy) -> list[str]:
    """Pod settings the operator's security policy does not permit (empty when all are permitted)."""
    problems: list[str] = []
    account = spec.service_account
    if account and account != "default" and account not in policy.allowed_service_accounts:
        allowed = ",".join([*policy.allowed_service_accounts, account])
        problems.append(
            f"spec.serviceAccount {account!r} is not allowed; set operator value "
            f"security.allowedServiceAccounts={{{allowed}}} to permit it"
        )
    for role, overrides in (("jobManager", spec.job_manager), ("taskManager", spec.task_manager)):
        problems += _role_security(role, overrides, policy)
    return problems


def validate(spec: StreamJobSpec, *, name: str, namespace: str, policy: SecurityPolicy | None = None) -> list[str]:
    """Every problem of a parsed spec, as messages for the user (empty when it is fine).

    ``policy`` is the operator's security policy (the safe defaults when None).
    """
    problems: list[str] = []
    if len(name) > MAX_NAME or not DNS_LABEL.match(name):
        problems.append(
            f"metadata.name: {name!r} must be a DNS label of at most {MAX_NAME} characters starting with a "
            "letter (it prefixes the Service and pod names)"
        )
    if spec.parallelism > spec.max_parallelism:
        problems.append(
            f"spec.parallelism: {spec.parallelism} exceeds maxParallelism {spec.max_parallelism}; "
            "raise maxParallelism (only with a fresh state) or lower parallelism"
        )
    if spec.worker_count * spec.task_slots < spec.parallelism:
        problems.append(
            f"spec.workers: {spec.worker_count} workers x {spec.task_slots} slots cannot run parallelism "
            f"{spec.parallelism}"
        )
    if spec.initial_savepoint_path and not SNAPSHOT_URI.match(spec.initial_savepoint_path):
        problems.append(
            f"spec.initialSavepointPath: {spec.initial_savepoint_path!r} is not an s3:// or file:/// URI "
            "of a savepoint directory"
        )
    if spec.savepoint_redeploy_nonce is not None and not spec.initial_savepoint_path and not spec.restore_from:
        problems.append(
            "spec.savepointRedeployNonce: set initialSavepointPath or restoreFrom.snapshotName to the savepoint "
            "to redeploy from"
        )
    if spec.initial_savepoint_path and spec.restore_from:
        problems.append("spec.restoreFrom: set either initialSavepointPath or restoreFrom.snapshotName, not both")
    if spec.savepoints.cron is not None:
        try:
            parse_cron(spec.savepoints.cron)
        except CronError as err:
            problems.append(f"spec.savepoints.cron: {err}")
    if spec.savepoints.cron is not None and spec.savepoints.interval is not None:
        problems.append("spec.savepoints: set either interval or cron, not both")
    problems += _pod_overrides(spec)
    problems += security_problems(spec, policy or SecurityPolicy())
    for where, template, mains in _templates(spec):
        problems += _template_problems(where, template, mains, policy or SecurityPolicy())
    if not problems:
        problems += _renders(spec, name=name, namespace=namespace)
    return problems


def _renders(spec: StreamJobSpec, *, name: str, namespace: str) -> list[str]:
    try:
        render_job_config(Attempt(JobRef(name, namespace, "uid"), spec, attempt=1, job_id="0" * 32))
    except ValidationError as err:
        return [f"job config: {line.removeprefix('spec.')}" for line in describe(err)]
    return []


def validate_change(old: StreamJobSpec | None, new: StreamJobSpec) -> list[str]:
    """Changes that cannot keep the job's state; the user must choose stateless or a redeploy."""
    if old is None or new.upgrade_mode is UpgradeMode.STATELESS:
        return []
    problems = []
    if old.max_parallelism != new.max_parallelism:
        problems.append(
            f"spec.maxParallelism: changing {old.max_parallelism} -> {new.max_parallelism} would make the "
            "state unrestorable (key groups change); use upgradeMode stateless or keep it"
        )
    if (
        new.upgrade_mode is UpgradeMode.LAST_STATE
        and old.state_backend != new.state_backend
        and None not in (old.state_backend, new.state_backend)
    ):
        problems.append(
            f"spec.stateBackend: {old.state_backend} -> {new.state_backend} cannot restore from a checkpoint; "
            "use upgradeMode savepoint (savepoints are portable)"
        )
    return problems
