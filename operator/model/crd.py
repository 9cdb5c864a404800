"""Generates the StreamJob CustomResourceDefinition from the pydantic models.

``python -m streamjob.operator.model.crd [FILE] > crds/FILE`` writes a checked-in CRD
(``streamjob.dev_streamjobs.yaml``, the default, or ``streamjob.dev_streamjobsnapshots.yaml``; the
chart carries copies); ``tests/unit/test_operator_crd.py`` fails when either
drifts. Pydantic's JSON schema is turned into a Kubernetes *structural* schema: ``$ref`` inlined,
``Optional`` collapsed (an unset field is simply absent), ``int | str`` made int-or-string,
free-form objects marked ``x-kubernetes-preserve-unknown-fields``, titles dropped.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from streamjob.operator.model.pod_template_schema import POD_TEMPLATE_MARKER, structural_schema
from streamjob.operator.model.snapshot import (
    SNAPSHOT_KIND,
    SNAPSHOT_PLURAL,
    SNAPSHOT_SHORT_NAME,
    StreamJobSnapshotSpec,
    StreamJobSnapshotStatus,
)
from streamjob.operator.model.spec import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, StreamJobSpec
from streamjob.operator.model.status import StreamJobStatus

_KEEP = (
    "description",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "State", "type": "string", "jsonPath": ".status.lifecycleState"},
    {"name": "Parallelism", "type": "integer", "jsonPath": ".spec.parallelism"},
    {"name": "Last Checkpoint", "type": "integer", "jsonPath": ".status.lastCheckpoint.id"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts.count"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

SCALE = {
    "specReplicasPath": ".spec.parallelism",
    "statusReplicasPath": ".status.parallelism",
    "labelSelectorPath": ".status.selector",
}
"""``kubectl scale sj/NAME --replicas=N`` (and an HPA) sets the parallelism; a rescale goes through a savepoint."""


class SchemaError(ValueError):
    """A model uses a construct that has no structural-schema equivalent."""


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Converts a pydantic JSON schema (with ``$defs``) to a structural OpenAPI v3 schema."""
    return _convert(schema, schema.get("$defs", {}))


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if node.get(POD_TEMPLATE_MARKER):
        return structural_schema(node.get("description", ""))
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _merge_outer(_convert(target, defs), node)
    if "allOf" in node and len(node["allOf"]) == 1:
        return _merge_outer(_convert(node["allOf"][0], defs), node)
    if "anyOf" in node:
        return _any_of(node, defs)
    out: dict[str, Any] = {}
    kind = node.get("type")
    if "const" in node:
        out["enum"] = [node["const"]]
    if kind == "object" or (kind is None and "properties" in node):
        out.update(_object(node, defs))
    elif kind == "array":
        out["type"] = "array"
        out["items"] = _convert(node.get("items", {}), defs)
    elif kind is None:
        out["x-kubernetes-preserve-unknown-fields"] = True
    else:
        out["type"] = kind
    for key in _KEEP:
        if key in node:
            out[key] = node[key]
    _copy_default(node, out)
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
    return out


def _object(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    props = node.get("properties")
    extra = node.get("additionalProperties")
    if props:
        out["properties"] = {name: _convert(sub, defs) for name, sub in props.items()}
        required = [name for name in node.get("required", []) if name in props]
        if required:
            out["required"] = required
    elif isinstance(extra, dict) and extra:
        out["additionalProperties"] = _convert(extra, defs)
    else:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    variants = [v for v in node["anyOf"] if v.get("type") != "null"]
    if len(variants) == 1:
        return _merge_outer(_convert(variants[0], defs), node)
    if sorted(v.get("type", "") for v in variants) == ["integer", "string"]:
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        return _merge_outer(out, node)
    raise SchemaError(f"no structural equivalent for anyOf {variants!r}")


def _merge_outer(inner: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    merged = dict(inner)
    if "description" in outer:
        merged["description"] = outer["description"]
    _copy_default(outer, merged)
    for key, value in outer.items():
        if key.startswith("x-kubernetes-"):
            merged[key] = value
    return merged


def _copy_default(node: dict[str, Any], out: dict[str, Any]) -> None:
    if "default" in node and node["default"] is not None and node["default"] not in ({}, []):
        out["default"] = node["default"]


def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec``."""
    return structural(StreamJobSpec.model_json_schema(by_alias=True, mode="validation"))


def status_schema() -> dict[str, Any]:
    """The structural schema of ``status`` (plus room for kopf's own bookkeeping)."""
    schema = structural(StreamJobStatus.model_json_schema(by_alias=True, mode="validation"))
    schema["properties"]["kopf"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return schema


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["all", "streamjob"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}, "scale": SCALE},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A checkpointed streaming job run by the streamjob operator.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


SNAPSHOT_COLUMNS: list[dict[str, Any]] = [
    {"name": "Job", "type": "string", "jsonPath": ".spec.jobReference.name"},
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Trigger", "type": "string", "jsonPath": ".status.trigger"},
    {"name": "Path", "type": "string", "jsonPath": ".status.path", "priority": 1},
    {"name": "Error", "type": "string", "jsonPath": ".status.error", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def snapshot_crd() -> dict[str, Any]:
    """The StreamJobSnapshot CustomResourceDefinition as a dict."""
    spec = structural(StreamJobSnapshotSpec.model_json_schema(by_alias=True, mode="validation"))
    status = structural(StreamJobSnapshotStatus.model_json_schema(by_alias=True, mode="validation"))
    status["properties"]["kopf"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{SNAPSHOT_PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": SNAPSHOT_KIND,
                "listKind": f"{SNAPSHOT_KIND}List",
                "plural": SNAPSHOT_PLURAL,
                "singular": SNAPSHOT_KIND.lower(),
                "shortNames": [SNAPSHOT_SHORT_NAME],
                "categories": ["streamjob"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": SNAPSHOT_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A savepoint or checkpoint of a StreamJob (taken, or recorded by path).",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `python -m streamjob.operator.model.crd`; do not edit by hand.\n"
#: The checked-in CRD files (under crds/ and charts/streamjob/crds/) and what renders each.
FILES = {"streamjob.dev_streamjobs.yaml": crd, "streamjob.dev_streamjobsnapshots.yaml": snapshot_crd}


def render(file: str = "streamjob.dev_streamjobs.yaml") -> str:
    """A CRD as YAML text, exactly as checked in."""
    header = HEADER if file == "streamjob.dev_streamjobs.yaml" else HEADER.replace("crd`", f"crd {file}`")
    return header + yaml.safe_dump(FILES[file](), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render(*sys.argv[1:2]))
