"""Merges the user's pod templates with what the operator requires (pure).

The model is the Flink Kubernetes Operator's: ``spec.podTemplate`` is a full PodTemplateSpec for
both roles, ``spec.jobManager.podTemplate`` / ``spec.taskManager.podTemplate`` are merged over it,
the older per-role fields (``env``, ``volumes``, ``securityContext``, ...) over those, and the
operator's own parts over everything (``pods``). ``merge`` is the one merge rule for every layer:
maps merge key by key; lists of objects merge by their key (``name``; a volume mount by
``mountPath``) and otherwise add the items the lower layer lacks; other lists and scalars are
replaced. A template cannot take an operator-owned field: ``owned_field_problems`` (called by
``validation``) refuses each with its path, so the merge never has to decide a conflict silently.
"""

from __future__ import annotations

import copy
from typing import Any

from streamjob.operator.model.spec import PodOverrides, StreamJobSpec

#: The field that identifies an item of a list of objects, by the list's field name (default ``name``).
LIST_KEYS = {"volumeMounts": "mountPath", "volumeDevices": "devicePath"}
#: Template metadata a user may set (the rest — name, namespace, owners — is the operator's).
USER_METADATA = frozenset({"labels", "annotations"})
#: Pod spec fields the operator owns, and what to use instead.
OWNED_POD_FIELDS = {
    "restartPolicy": "the operator owns restarts (restartPolicy Never); see spec.restartPolicy",
    "serviceAccountName": "use spec.serviceAccount",
    "serviceAccount": "use spec.serviceAccount",
    "ephemeralContainers": "ephemeral containers cannot be set when a pod is created",
}
#: Fields of the main container (``jobmaster`` / ``worker``) the operator owns, and what to use instead.
OWNED_CONTAINER_FIELDS = {
    "image": "use spec.image",
    "imagePullPolicy": "use spec.imagePullPolicy",
    "command": "the operator runs streamjob; put the job's arguments in spec.args",
    "args": "the operator runs streamjob; put the job's arguments in spec.args",
    "ports": "the main container's ports are the operator's; expose other ports from a sidecar",
    "terminationMessagePolicy": "the operator reads the failure from the termination message",
}
#: Also owned in the JobMaster's container: its probes read ``/health``.
OWNED_JOBMASTER_FIELDS = {
    "readinessProbe": "the operator probes the JobMaster's /health",
    "livenessProbe": "the operator probes the JobMaster's /health",
    "startupProbe": "the operator probes the JobMaster's /health",
}


def _key_of(field: str) -> str:
    return LIST_KEYS.get(field, "name")


def merge(low: Any, high: Any, field: str = "") -> Any:
    """``high`` merged over ``low`` (neither changed); ``field`` names the list being merged, for its key."""
    if high is None:
        return copy.deepcopy(low)
    if isinstance(low, dict) and isinstance(high, dict):
        out = copy.deepcopy(low)
        for key, value in high.items():
            out[key] = merge(low.get(key), value, key)
        return out
    if isinstance(low, list) and isinstance(high, list) and _objects(low) and _objects(high):
        key = _key_of(field)
        if all(key in item for item in (*low, *high)):
            return _merge_keyed(low, high, key)
        return [*copy.deepcopy(low), *(copy.deepcopy(item) for item in high if item not in low)]
    return copy.deepcopy(high)


def _objects(items: list[Any]) -> bool:
    return all(isinstance(item, dict) for item in items)


def _merge_keyed(low: list[dict[str, Any]], high: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Items of ``low`` in order (each merged with ``high``'s item of the same key), then ``high``'s new ones."""
    by_key = {item[key]: item for item in high}
    out = [merge(item, by_key.get(item[key])) for item in low]
    seen = {item[key] for item in low}
    return [*out, *(copy.deepcopy(item) for item in high if item[key] not in seen)]


def user_template(spec: StreamJobSpec, overrides: PodOverrides) -> dict[str, Any]:
    """``spec.podTemplate`` with the role's ``podTemplate`` merged over it."""
    merged: dict[str, Any] = merge(spec.pod_template or {}, overrides.pod_template or {})
    return merged


def container_named(template: dict[str, Any], name: str) -> dict[str, Any]:
    """The template's container called ``name`` (the main container), or an empty one."""
    for container in (template.get("spec") or {}).get("containers") or []:
        if isinstance(container, dict) and container.get("name") == name:
            return container
    return {}


def with_env(first: list[dict[str, Any]], *later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Env entries in order, an entry of a later list replacing an earlier one of the same name.

    The operator's entries come first so that a user's ``$(POD_IP)`` reference resolves; names the
    operator reserves never reach here (``validation`` refuses them).
    """
    entries = [*first, *(entry for group in later for entry in group)]
    last = {entry.get("name"): index for index, entry in enumerate(entries)}
    return [entry for index, entry in enumerate(entries) if last[entry.get("name")] == index]


def owned_field_problems(template: dict[str, Any], where: str, main: str) -> list[str]:
    """The operator-owned fields a template sets, each as ``path: what to do instead``.

    ``main`` is the name of the role's main container (``jobmaster`` or ``worker``); a template for
    both roles (``spec.podTemplate``) is checked against both names by the caller.
    """
    problems = []
    for key in template.get("metadata") or {}:
        if key not in USER_METADATA:
            problems.append(f"{where}.metadata.{key}: set by the operator; a template may set labels and annotations")
    pod = template.get("spec") or {}
    for key, why in OWNED_POD_FIELDS.items():
        if key in pod:
            problems.append(f"{where}.spec.{key}: set by the operator; {why}")
    owned = {**OWNED_CONTAINER_FIELDS, **(OWNED_JOBMASTER_FIELDS if main == "jobmaster" else {})}
    for list_field in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(list_field) or []):
            path = f"{where}.spec.{list_field}[{index}]"
            if not isinstance(container, dict):
                continue
            if not container.get("name"):
                problems.append(f"{path}.name: every container needs a name")
            elif list_field == "containers" and container["name"] == main:
                problems += [
                    f"{path}.{key}: set by the operator; {why}" for key, why in owned.items() if key in container
                ]
    return problems
