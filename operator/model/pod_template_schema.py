"""The schema of a Kubernetes PodTemplateSpec: the CRD's podTemplate nodes and the unknown-field check.

``pod_template_fields.json`` (generated from the pinned Kubernetes client by
``python -m tests.support.pod_fields``) holds every field of a PodTemplateSpec and its type.
``structural_schema`` expands it into the structural schema that ``crd`` puts at
``spec.podTemplate``, ``spec.jobManager.podTemplate`` and ``spec.taskManager.podTemplate``: the API
server checks the type of every known field, and every object keeps unknown fields
(``x-kubernetes-preserve-unknown-fields``) instead of pruning them, whatever the client's field
validation, so that ``field_problems`` (called by ``validation``) refuses each with its path named.
Nothing a user writes in a pod template is dropped silently.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

FIELDS_FILE = "pod_template_fields.json"
POD_TEMPLATE_MARKER = "x-streamjob-pod-template"
"""Set in a field's JSON schema (``json_schema_extra``) to have ``crd`` put the PodTemplateSpec schema there."""

_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "int-or-string": {"x-kubernetes-int-or-string": True},
}
_PYTHON: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "int-or-string": (int, str),
}


@cache
def field_tree() -> dict[str, Any]:
    """The checked-in field tree: ``{"root": ..., "types": {name: {field: type}}}``."""
    text = resources.files(__package__).joinpath(FIELDS_FILE).read_text()
    tree: dict[str, Any] = json.loads(text)
    return tree


SCHEMA_DEPTH = 3
"""Object levels the CRD spells out (the template, the pod spec, a container or volume); deeper objects
are kept whole for ``field_problems`` to check. Spelling out the whole tree made the CRD 580 KB and
one level more 295 KB, beyond what a client-side ``kubectl apply`` can store (its last-applied
annotation holds at most 256 KiB); three levels make it about 140 KB."""


def structural_schema(description: str, depth: int = SCHEMA_DEPTH) -> dict[str, Any]:
    """The PodTemplateSpec as a structural schema (types only; unknown fields kept for the operator to refuse)."""
    tree = field_tree()
    schema = _node(tree["root"], tree["types"], depth)
    return {"description": description, **schema}


def _node(kind: str, types: dict[str, dict[str, str]], depth: int) -> dict[str, Any]:
    if kind in _SCALARS:
        return dict(_SCALARS[kind])
    if kind.startswith("["):
        return {"type": "array", "items": _node(kind[1:-1], types, depth)}
    if kind.startswith("{"):
        return {"type": "object", "additionalProperties": _node(kind[1:-1], types, depth)}
    if depth <= 0:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    fields = types[kind]
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {name: _node(sub, types, depth - 1) for name, sub in fields.items()},
    }


def field_problems(template: object, where: str) -> list[str]:
    """Every unknown field and wrongly typed value of a pod template, as ``path: problem`` lines."""
    tree = field_tree()
    problems: list[str] = []
    _check(template, tree["root"], tree["types"], where, problems)
    return problems


def _type_name(kind: str) -> str:
    if kind.startswith("["):
        return "a list"
    if kind.startswith("{"):
        return "a map"
    return kind if kind in _SCALARS else "an object"


def _check(value: object, kind: str, types: dict[str, dict[str, str]], where: str, out: list[str]) -> None:
    if value is None:
        return
    if kind in _SCALARS:
        if not isinstance(value, _PYTHON[kind]) or (kind != "boolean" and isinstance(value, bool)):
            out.append(f"{where}: must be {_type_name(kind)}, not {json.dumps(value)[:60]}")
        return
    if kind.startswith("["):
        if not isinstance(value, list):
            out.append(f"{where}: must be a list")
            return
        for index, item in enumerate(value):
            _check_item(item, kind[1:-1], types, f"{where}[{index}]", out)
        return
    if not isinstance(value, dict):
        out.append(f"{where}: must be {_type_name(kind)}")
        return
    if kind.startswith("{"):
        for key, item in value.items():
            _check_item(item, kind[1:-1], types, f"{where}.{key}", out)
        return
    fields = types[kind]
    for key, item in value.items():
        if key not in fields:
            out.append(f"{where}.{key}: unknown field of a {kind}{_hint(key, fields)}")
        else:
            _check(item, fields[key], types, f"{where}.{key}", out)


def _check_item(value: object, kind: str, types: dict[str, dict[str, str]], where: str, out: list[str]) -> None:
    """A list item or map value: null is not an unset field there but a wrong value."""
    if value is None:
        out.append(f"{where}: must be {_type_name(kind)}, not null")
    else:
        _check(value, kind, types, where, out)


def _hint(key: str, fields: dict[str, str]) -> str:
    """``did you mean X?`` for a likely typo, else nothing."""
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
