"""The example manifests, the chart's static parts and the Dockerfile pins are consistent (no cluster)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from streamjob.operator.model import StreamJobSpec
from streamjob.operator.validation import validate

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "k8s").glob("*.yaml"))
CHART = ROOT / "charts" / "streamjob"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_manifests_are_valid(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] != "StreamJob":
            continue
        assert doc["apiVersion"] == "streamjob.dev/v1alpha1"
        spec = StreamJobSpec.parse(doc["spec"])
        assert validate(spec, name=doc["metadata"]["name"], namespace="default") == []
        assert spec.entrypoint.startswith("examples.")


def test_chart_metadata_and_values() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "streamjob"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("image", "resources", "watchNamespaces", "logLevel", "metrics", "replicas", "peering"):
        assert key in values
    crds = {d["metadata"]["name"] for p in (CHART / "crds").glob("*.yaml") for d in yaml.safe_load_all(p.read_text())}
    assert crds == {
        "streamjobs.streamjob.dev",
        "streamjobsnapshots.streamjob.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_dockerfile_is_multistage_non_root_and_pins_every_runtime_dependency() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) == 2
    assert re.search(r"^USER 10001", text, flags=re.M)
    assert "COPY constraints.txt /tmp/constraints.txt" in text
    constraints = (ROOT / "constraints.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s]+)$", constraints, flags=re.M))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {dep}"
