from __future__ import annotations

from typing import Any

import pytest

from streamjob.operator.diff import ChangeKind, classify
from streamjob.operator.model import StreamJobSpec
from streamjob.operator.validation import parse_spec, validate, validate_change

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "image": "a:1",
    "entrypoint": "m:f",
    "storage": {"checkpointsUri": "s3://b/c"},
    "parallelism": 2,
}


def spec(**patch: Any) -> StreamJobSpec:
    return StreamJobSpec.parse({**BASE, **patch})


@pytest.mark.parametrize(
    ("patch", "kind"),
    [
        ({}, ChangeKind.NONE),
        ({"restartPolicy": {"maxRestarts": 1}}, ChangeKind.IGNORE),
        ({"savepointTriggerNonce": 3}, ChangeKind.IGNORE),
        ({"upgradeMode": "last-state"}, ChangeKind.IGNORE),
        ({"parallelism": 3}, ChangeKind.SCALE),
        ({"image": "a:2"}, ChangeKind.UPGRADE),
        ({"checkpoint": {"intervalMs": 100}}, ChangeKind.UPGRADE),
        ({"parallelism": 3, "image": "a:2"}, ChangeKind.UPGRADE),
    ],
)
def test_classify(patch: dict[str, Any], kind: ChangeKind) -> None:
    assert classify(spec(), spec(**patch)).kind is kind


def test_suspend_and_resume_are_flagged() -> None:
    assert classify(spec(), spec(state="suspended")).suspend
    assert classify(spec(state="suspended"), spec()).resume
    assert classify(None, spec()).kind is ChangeKind.UPGRADE


def test_parse_errors_name_the_field() -> None:
    parsed, errors = parse_spec({**BASE, "parallelism": "many"})
    assert parsed is None
    assert any(e.startswith("spec.parallelism:") for e in errors)


def test_validate_reports_what_the_schema_cannot() -> None:
    problems = validate(
        spec(
            parallelism=9,
            maxParallelism=4,
            initialSavepointPath="/tmp/sp",
            taskManager={"labels": {"streamjob.dev/job": "x"}, "env": [{"name": "POD_IP", "value": "1"}]},
        ),
        name="Bad_Name",
        namespace="ns",
    )
    text = "\n".join(problems)
    for needle in ("metadata.name", "exceeds maxParallelism", "initialSavepointPath", "reserved", "POD_IP"):
        assert needle in text
    assert validate(spec(), name="good", namespace="ns") == []


def test_validate_change_refuses_state_breaking_changes() -> None:
    assert validate_change(spec(), spec(maxParallelism=64))
    assert validate_change(spec(), spec(maxParallelism=64, upgradeMode="stateless")) == []
    old, new = spec(stateBackend="hashmap"), spec(stateBackend="rocksdb", upgradeMode="last-state")
    assert validate_change(old, new)
    assert validate_change(old, spec(stateBackend="rocksdb")) == []
