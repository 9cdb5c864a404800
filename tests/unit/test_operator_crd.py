"""The checked-in CRD (and the chart's copy) match the pydantic models; the schema is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamjob.operator.model import crd as crdgen

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "crds" / "streamjob.dev_streamjobs.yaml"
CHART_COPY = ROOT / "charts" / "streamjob" / "crds" / "streamjob.dev_streamjobs.yaml"
REGENERATE = "python -m streamjob.operator.model.crd > crds/streamjob.dev_streamjobs.yaml"


@pytest.mark.parametrize("path", [CHECKED_IN, CHART_COPY], ids=["crds", "chart"])
def test_checked_in_crd_matches_models(path: Path) -> None:
    assert path.read_text() == crdgen.render(), f"{path} drifted from the models; run `{REGENERATE}` (and copy)"


def _walk(node: dict[str, Any], where: str) -> list[str]:
    problems = []
    for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
        if banned in node:
            problems.append(f"{where}: {banned}")
    if not any(k in node for k in ("type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")):
        problems.append(f"{where}: no type")
    if node.get("default", 0) is None:
        problems.append(f"{where}: null default")
    for name, sub in node.get("properties", {}).items():
        problems += _walk(sub, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{where}{{}}")
    return problems


def test_schema_is_structural() -> None:
    version = crdgen.crd()["spec"]["versions"][0]
    assert _walk(version["schema"]["openAPIV3Schema"], "") == []


def test_crd_names_columns_and_subresource() -> None:
    doc = yaml.safe_load(CHECKED_IN.read_text())
    assert doc["metadata"]["name"] == "streamjobs.streamjob.dev"
    assert doc["spec"]["names"]["shortNames"] == ["sj"]
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.parallelism",
            "statusReplicasPath": ".status.parallelism",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["State", "Parallelism", "Last Checkpoint", "Restarts", "Age"]


def test_spec_schema_has_enums_defaults_ranges_and_cel() -> None:
    spec = crdgen.spec_schema()
    props = spec["properties"]
    assert props["upgradeMode"]["enum"] == ["savepoint", "last-state", "stateless"]
    assert props["upgradeMode"]["default"] == "savepoint"
    assert props["state"]["enum"] == ["running", "suspended"]
    assert props["parallelism"]["minimum"] == 1
    assert props["maxParallelism"]["maximum"] == 32768
    assert set(spec["required"]) == {"image", "entrypoint", "storage"}
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self.parallelism <= self.maxParallelism" in rules
    restart = props["restartPolicy"]["properties"]
    assert restart["strategy"]["enum"] == ["fixed", "exponential"]
    assert props["jobManager"]["properties"]["resources"]["additionalProperties"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }


def test_status_schema_keeps_room_for_kopf_and_free_form_specs() -> None:
    status = crdgen.status_schema()["properties"]
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["lastStableSpec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "Running" in status["lifecycleState"]["enum"]


SNAPSHOT_FILE = "streamjob.dev_streamjobsnapshots.yaml"


@pytest.mark.parametrize("root", [ROOT / "crds", ROOT / "charts" / "streamjob" / "crds"], ids=["crds", "chart"])
def test_checked_in_snapshot_crd_matches_models(root: Path) -> None:
    path = root / SNAPSHOT_FILE
    regenerate = f"python -m streamjob.operator.model.crd {SNAPSHOT_FILE} > crds/{SNAPSHOT_FILE}"
    assert path.read_text() == crdgen.render(SNAPSHOT_FILE), f"{path} drifted; run `{regenerate}` (and copy)"


def test_snapshot_crd_is_structural_with_names_columns_and_rules() -> None:
    doc = crdgen.snapshot_crd()
    version = doc["spec"]["versions"][0]
    assert _walk(version["schema"]["openAPIV3Schema"], "") == []
    assert doc["metadata"]["name"] == "streamjobsnapshots.streamjob.dev"
    assert doc["spec"]["names"]["shortNames"] == ["sjs"] and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Job", "Type", "State", "Trigger", "Path", "Error", "Age"
    ]  # fmt: skip
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["jobReference"]
    assert spec["properties"]["type"]["enum"] == ["savepoint", "checkpoint"]
    messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert any("disposeOnDelete cannot be true for a checkpoint" in m for m in messages)
    assert any("cannot change" in m for m in messages)
