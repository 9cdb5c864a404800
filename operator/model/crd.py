"""Generates the StreamJob CustomResourceDefinition from the pydantic models.

``python -m streamjob.operator.model.crd > crds/streamjob.dev_streamjobs.yaml`` writes the
checked-in CRD (the chart carries a copy); ``tests/unit/test_operator_crd.py`` fails when either
drifts. Pydantic's JSON schema is turned into a Kubernetes *structural* schema: ``$ref`` inlined,
``Optional`` collapsed (an unset field is simply absent), ``int | str`` made int-or-string,
free-form objects marked ``x-kubernetes-preserve-unknown-fields``, titles dropped.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

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


class SchemaError(ValueError):
    """A model uses a construct that has no structural-schema equivalent."""


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Converts a pydantic JSON schema (with ``$defs``) to a structural OpenAPI v3 schema."""
    return _convert(schema, schema.get("$defs", {}))


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
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
                    "subresources": {"status": {}},
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


HEADER = "# Generated by `python -m streamjob.operator.model.crd`; do not edit by hand.\n"


def render() -> str:
    """The CRD as YAML text, exactly as checked in."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
