"""The checkpoint knobs have one definition (``worker/config.py``); the CRD and the CLI take theirs from it."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from streamjob.operator.model.crd import spec_schema
from streamjob.operator.model.spec import CheckpointSpec
from streamjob.worker.cli_parser import parser
from streamjob.worker.config import (
    UNALIGNED_NEEDS_ONE_CONCURRENT,
    CheckpointingMode,
    CheckpointOverrides,
    CheckpointSettings,
    ExternalizedCheckpointCleanup,
)

pytestmark = pytest.mark.unit


def _worker_field(name: str) -> dict[str, Any]:
    """The worker's JSON schema of one override, without its ``null`` alternative."""
    node = CheckpointOverrides.model_json_schema()["properties"][name]
    if "$ref" in str(node):
        return {"enum": [m.value for m in {"mode": CheckpointingMode}.get(name, ExternalizedCheckpointCleanup)]}
    return next(alt for alt in node["anyOf"] if alt.get("type") != "null")


def test_the_crd_has_every_worker_knob_with_its_bounds_and_enum() -> None:
    crd = spec_schema()["properties"]["checkpoint"]["properties"]
    assert set(crd) == {to_camel(name) for name in CheckpointOverrides.model_fields}
    for name in CheckpointOverrides.model_fields:
        worker, operator = _worker_field(name), crd[to_camel(name)]
        for key in ("minimum", "maximum", "enum", "type"):
            if key in worker:
                assert operator[key] == worker[key], (name, key)
        assert operator["description"] == CheckpointOverrides.model_fields[name].description


@pytest.mark.parametrize("name", [n for n in CheckpointOverrides.model_fields if "minimum" in _worker_field(n)])
def test_both_models_refuse_the_same_values_at_the_bounds(name: str) -> None:
    bounds = _worker_field(name)
    for value, ok in ((bounds["minimum"], True), (bounds["maximum"], True), (bounds["minimum"] - 1, False)):
        for model, key in ((CheckpointOverrides, name), (CheckpointSpec, to_camel(name))):
            if ok:
                model.model_validate({key: value})
            else:
                with pytest.raises(ValidationError):
                    model.model_validate({key: value})
    for model, key in ((CheckpointOverrides, name), (CheckpointSpec, to_camel(name))):
        with pytest.raises(ValidationError):
            model.model_validate({key: bounds["maximum"] + 1})


def test_the_operator_uses_the_worker_enums() -> None:
    spec = CheckpointSpec.model_validate({"mode": "AT_LEAST_ONCE", "externalizedCleanup": "DELETE_ON_CANCELLATION"})
    assert spec.mode is CheckpointingMode.AT_LEAST_ONCE
    assert spec.externalized_cleanup is ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION
    assert isinstance(spec, CheckpointOverrides)


def test_the_crd_rules_are_the_worker_rules_with_its_messages() -> None:
    rules = spec_schema()["properties"]["checkpoint"]["x-kubernetes-validations"]
    messages = [r["message"] for r in rules]
    # AT_LEAST_ONCE with unaligned runs with a warning (Flink's behaviour): no rule refuses it.
    CheckpointSettings(unaligned=True, mode=CheckpointingMode.AT_LEAST_ONCE, max_concurrent=2)
    with pytest.raises(ValidationError, match=r"max_concurrent = 1") as two:
        CheckpointSettings(unaligned=True, max_concurrent=2)
    assert UNALIGNED_NEEDS_ONE_CONCURRENT in str(two.value)
    assert UNALIGNED_NEEDS_ONE_CONCURRENT.replace("max_concurrent", "maxConcurrent") in messages
    assert len(rules) == 1


def test_the_cli_mode_choices_are_the_enum() -> None:
    run = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    mode = next(a for a in run._actions if a.dest == "mode")
    assert list(mode.choices or []) == [m.value for m in CheckpointingMode]
