"""Pure pieces of the node agent: reading a pod spec the way the kubelet does.

Resolves a container's environment (``value``, ``valueFrom`` fieldRef / resourceFieldRef /
secretKeyRef / configMapKeyRef, ``envFrom``), expands ``$(VAR)`` references in command and args,
computes the files of ConfigMap / Secret / projected / downwardAPI volumes, and builds the
``status.containerStatuses`` entries. No I/O: objects are fetched through the ``Lookup`` callables the
agent passes in, so this module is testable on plain dicts.

Callers: ``tests/cluster/node_agent.py``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
# (kind, namespace, name) -> the object's data as str -> bytes, or None when it does not exist.
Lookup = Callable[[str, str, str], "dict[str, bytes] | None"]
# (pod, audience, expirationSeconds) -> a service-account token for the pod.
TokenSource = Callable[[Json, str, int], str]


class ConfigError(Exception):
    """The pod refers to something that does not exist (the kubelet's CreateContainerConfigError)."""


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(replace, text)


def field_value(pod: Json, path: str, pod_ip: str) -> str:
    """The value of a downward-API ``fieldPath`` for this pod."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted(meta.get(path.split(".")[1], {}).items())
        return "\n".join(f'{key}="{value}"' for key, value in items)
    raise ConfigError(f"unsupported fieldPath {path!r}")


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def _quantity(value: str) -> float:
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIX:
        raise ConfigError(f"cannot parse quantity {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


# What the node offers when a container sets no limit (matches the Node the agent registers).
NODE_CAPACITY = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"}


def resource_value(container: Json, ref: Json) -> str:
    """A ``resourceFieldRef`` value: limits default to the node's capacity, rounded up like the kubelet."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    section = container.get("resources", {}).get(kind, {})
    raw = section.get(name) or (NODE_CAPACITY.get(name) if kind == "limits" else None) or "0"
    divisor = _quantity(ref.get("divisor", "1") or "1") or 1.0
    value = _quantity(raw) / divisor
    whole = int(value)
    return str(whole if value == whole else whole + 1)


def _decode(kind: str, obj: Json) -> dict[str, bytes]:
    """The data of a ConfigMap or Secret as str -> bytes."""
    out: dict[str, bytes] = {}
    if kind == "secrets":
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(value)
        for key, value in (obj.get("stringData") or {}).items():
            out[key] = str(value).encode()
    else:
        for key, value in (obj.get("data") or {}).items():
            out[key] = str(value).encode()
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(value)
    return out


def decode_object(kind: str, obj: Json) -> dict[str, bytes]:
    """Public wrapper of the ConfigMap/Secret decoding used by the agent's lookup."""
    return _decode(kind, obj)


def _key_ref(lookup: Lookup, kind: str, namespace: str, ref: Json) -> str | None:
    data = lookup(kind, namespace, ref.get("name", ""))
    optional = bool(ref.get("optional"))
    label = "secret" if kind == "secrets" else "configmap"
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
    key = ref.get("key", "")
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {label} {namespace}/{ref.get('name', '')}")
    return data[key].decode("utf-8", "replace")


def container_env(pod: Json, container: Json, pod_ip: str, lookup: Lookup) -> dict[str, str]:
    """The container's environment as the kubelet computes it (envFrom first, then env in order)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for field, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = source.get(field)
            if ref is None:
                continue
            data = lookup(kind, namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
            for key, raw in data.items():
                env[prefix + key] = raw.decode("utf-8", "replace")
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip)
        elif "resourceFieldRef" in source:
            value = resource_value(container, source["resourceFieldRef"])
        elif "secretKeyRef" in source:
            value = _key_ref(lookup, "secrets", namespace, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref(lookup, "configmaps", namespace, source["configMapKeyRef"])
        else:
            raise ConfigError(f"unsupported valueFrom in env {name}: {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


@dataclass(frozen=True)
class VolumeFile:
    """One file of a materialised volume: a path relative to the volume's root, its content and mode."""

    path: str
    content: bytes
    mode: int


def _items(
    data: dict[str, bytes], items: list[Json] | None, default_mode: int, where: str, optional: bool
) -> list[VolumeFile]:
    if not items:
        return [VolumeFile(key, value, default_mode) for key, value in sorted(data.items())]
    out = []
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise ConfigError(f"configmap/secret {where} has no key {key}")
        out.append(VolumeFile(str(item.get("path", key)), data[key], int(item.get("mode", default_mode))))
    return out


def _object_files(kind: str, source: Json, namespace: str, lookup: Lookup, default_mode: int) -> list[VolumeFile]:
    name = source.get("secretName") if kind == "secrets" else source.get("name")
    name = name or ""
    data = lookup(kind, namespace, name)
    optional = bool(source.get("optional"))
    if data is None:
        if optional:
            return []
        raise ConfigError(f'{"secret" if kind == "secrets" else "configmap"} "{name}" not found')
    mode = int(source.get("defaultMode", default_mode))
    return _items(data, source.get("items"), mode, f"{namespace}/{name}", optional)


def _downward_files(pod: Json, items: list[Json], pod_ip: str, mode: int) -> list[VolumeFile]:
    out = []
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], pod_ip)
        else:
            raise ConfigError("downwardAPI resourceFieldRef items are not supported by the test bed")
        out.append(VolumeFile(item["path"], value.encode(), int(item.get("mode", mode))))
    return out


def volume_files(pod: Json, volume: Json, pod_ip: str, lookup: Lookup, token: TokenSource) -> list[VolumeFile] | None:
    """The files a configMap / secret / projected / downwardAPI volume holds; None for directory volumes."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        return _object_files("configmaps", volume["configMap"], namespace, lookup, 0o644)
    if "secret" in volume:
        return _object_files("secrets", volume["secret"], namespace, lookup, 0o644)
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward_files(pod, source.get("items") or [], pod_ip, int(source.get("defaultMode", 0o644)))
    if "projected" in volume:
        projected = volume["projected"]
        mode = int(projected.get("defaultMode", 0o644))
        files: list[VolumeFile] = []
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                value = token(pod, sat.get("audience", ""), int(sat.get("expirationSeconds", 3600)))
                files.append(VolumeFile(sat["path"], value.encode(), mode))
            elif "configMap" in source:
                files += _object_files("configmaps", source["configMap"], namespace, lookup, mode)
            elif "secret" in source:
                secret = dict(source["secret"])
                secret["secretName"] = secret.get("name", "")
                files += _object_files("secrets", secret, namespace, lookup, mode)
            elif "downwardAPI" in source:
                files += _downward_files(pod, source["downwardAPI"].get("items") or [], pod_ip, mode)
        return files
    if "emptyDir" in volume or "persistentVolumeClaim" in volume or "hostPath" in volume:
        return None
    raise ConfigError(f"volume {volume.get('name')}: kind {sorted(set(volume) - {'name'})} is not supported")


def running_state(started_at: str) -> Json:
    return {"running": {"startedAt": started_at}}


def waiting_state(reason: str, message: str) -> Json:
    return {"waiting": {"reason": reason, "message": message}}


def terminated_state(
    exit_code: int, started_at: str, finished_at: str, container_id: str, message: str = "", signal: int = 0
) -> Json:
    """A terminated state with the kubelet's reasons: Completed for 0, Error otherwise."""
    state: Json = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": started_at,
        "finishedAt": finished_at,
        "containerID": container_id,
    }
    if signal:
        state["signal"] = signal
    if message:
        state["message"] = message
    return {"terminated": state}
