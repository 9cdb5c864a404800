"""Generates ``operator/model/pod_template_fields.json``: the field tree of a Kubernetes PodTemplateSpec.

``python -m tests.support.pod_fields > operator/model/pod_template_fields.json`` walks the models of
the pinned Kubernetes client (``kubernetes`` may be imported only by the operator's adapter, so the
walk lives here and its result is checked in); ``tests/unit/test_pod_template.py`` fails when the
file drifts from the client. The operator builds the CRD's podTemplate schema and its unknown-field
checks from the file (``operator/model/pod_template_schema.py``).

Type strings: ``string``, ``integer``, ``number``, ``boolean``, ``int-or-string`` (IntOrString and
resource quantities), ``[T]`` a list, ``{T}`` a map of strings to T, else the name of another type.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import kubernetes
import kubernetes.client as client

PRIMITIVES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "datetime": "string",
    "object": "int-or-string",
}
#: Fields whose values are resource quantities (``cpu: 1`` or ``cpu: 500m``), typed ``str`` by the client.
QUANTITIES = {"limits", "requests", "overhead", "sizeLimit", "capacity"}


def _type(name: str, field: str, found: dict[str, dict[str, str]]) -> str:
    if match := re.fullmatch(r"List\[(.+)\]", name):
        return "[" + _type(match.group(1), field, found) + "]"
    if match := re.fullmatch(r"Dict\[str, (.+)\]", name):
        inner = "int-or-string" if field in QUANTITIES else _type(match.group(1), field, found)
        return "{" + inner + "}"
    if name in PRIMITIVES:
        return "int-or-string" if field in QUANTITIES else PRIMITIVES[name]
    short = name.removeprefix("V1").removeprefix("Core")
    if short not in found:
        found[short] = {}  # reserve first: recursive types end here
        model = getattr(client, name)
        found[short] = {
            model.attribute_map[attr]: _type(kind, model.attribute_map[attr], found)
            for attr, kind in sorted(model.openapi_types.items(), key=lambda item: model.attribute_map[item[0]])
        }
    return short


def field_tree() -> dict[str, Any]:
    """``{"root": "PodTemplateSpec", "types": {name: {field: type}}}`` from the client's models."""
    found: dict[str, dict[str, str]] = {}
    root = _type("V1PodTemplateSpec", "", found)
    return {
        "client": kubernetes.__version__,
        "root": root,
        "types": dict(sorted(found.items())),
    }


def render() -> str:
    """The JSON text exactly as checked in."""
    return json.dumps(field_tree(), indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
