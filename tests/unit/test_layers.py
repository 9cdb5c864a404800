"""The import contracts hold, and break when someone imports against them (``make lint`` runs the same check).

Each test copies the two packages into a temporary tree, optionally injects imports that go against a
contract, and runs ``lint-imports`` on that copy with the project's own configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
OPERATOR_MAY_USE = {"config", "storage", "snapshot", "protocol", "errors"}


def _tree(tmp_path: Path) -> Path:
    """``tmp_path/streamjob/{worker,operator}``: copies of the packages, plus the project's configuration."""
    for name in ("worker", "operator"):
        shutil.copytree(ROOT / name, tmp_path / "streamjob" / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _inject(tree: Path, relative: str, line: str) -> None:
    path = tree / "streamjob" / relative
    path.write_text(path.read_text() + f"\n{line}  # injected by test_layers\n")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _names() -> list[str]:
    return [c["name"] for c in CONFIG["contracts"]]


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(_names())} kept, 0 broken." in done.stdout


BACK_IMPORTS = [
    # (file, injected import, the contract it breaks, what the report says about it)
    (
        "worker/snapshot/handles.py",
        "import streamjob.worker.runtime",
        "The worker's layers",
        "streamjob.worker.snapshot.handles -> streamjob.worker.runtime",
    ),
    (
        "worker/graph/job_graph.py",
        "from streamjob.worker.api import functions",
        "The worker's layers",
        "streamjob.worker.graph.job_graph -> streamjob.worker.api",
    ),
    (
        "worker/api/environment.py",
        "import streamjob.worker.local",
        "The worker's layers",
        "streamjob.worker.api.environment -> streamjob.worker.local",
    ),
    (
        "worker/runtime/codec.py",
        "import streamjob.worker.checkpoint.stats",
        "The worker's layers",  # runtime and checkpoint are independent siblings
        "streamjob.worker.runtime.codec -> streamjob.worker.checkpoint.stats",
    ),
    (
        "operator/observer/pods.py",
        "import streamjob.operator.reconciler.plan",
        "The operator's layers",
        "streamjob.operator.observer.pods -> streamjob.operator.reconciler.plan",
    ),
    (
        "operator/model/spec.py",
        "import streamjob.worker.runtime.codec",
        "The operator uses only the worker's config, storage, snapshot model, protocol and errors",
        "streamjob.operator.model.spec -> streamjob.worker.runtime.codec",
    ),
    (
        "worker/storage/uri.py",
        "import boto3",
        "boto3 and botocore only in the S3 adapter (worker/storage/s3_store.py)",
        "streamjob.worker.storage.uri -> boto3",
    ),
    (
        "operator/resources/pods.py",
        "import kubernetes",
        "The Kubernetes client only in the operator's Kubernetes adapter (operator/k8s.py)",
        "streamjob.operator.resources.pods -> kubernetes",
    ),
    (
        "worker/api/datastream.py",
        "import streamjob.worker.api.environment",  # environment imports datastream
        "No import cycles",
        "No cycles are allowed in streamjob.worker.api.",
    ),
    (
        "operator/resources/labels.py",
        "import streamjob.operator.resources.pods",  # pods imports labels
        "No import cycles",
        "No cycles are allowed in streamjob.operator.resources.",
    ),
    (
        "operator/reconciler/plan.py",
        "import kopf",
        "kopf only at the operator's edge (operator/handlers.py, operator/main.py)",
        "streamjob.operator.reconciler.plan -> kopf",
    ),
]


def test_every_injected_back_import_breaks_its_contract(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    for relative, line, _, _ in BACK_IMPORTS:
        _inject(tree, relative, line)
    done = _lint(tree)
    report = " ".join((done.stdout + done.stderr).split())  # the report wraps long lines
    assert done.returncode != 0, report
    broken = {contract for _, _, contract, _ in BACK_IMPORTS}
    for name in _names():
        assert f"{name} {'BROKEN' if name in broken else 'KEPT'}" in report, name
    for _, _, _, named in BACK_IMPORTS:
        assert named in report


def test_a_module_outside_every_layer_breaks_the_layers(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "streamjob" / "worker" / "stray.py").write_text('"""Placed in no layer."""\n')
    done = _lint(tree)
    report = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "The worker's layers BROKEN" in report and "stray" in report


def test_the_operator_contract_forbids_every_worker_module_but_the_allowed_ones() -> None:
    """A new worker module is forbidden to the operator until someone decides otherwise."""
    contract = next(c for c in CONFIG["contracts"] if c["name"].startswith("The operator uses only"))
    modules = {p.stem if p.suffix == ".py" else p.name for p in (ROOT / "worker").iterdir()}
    modules = {m for m in modules if not m.startswith(("_", ".")) and m != "py"}
    modules = {m for m in modules if (ROOT / "worker" / m).is_dir() or (ROOT / "worker" / f"{m}.py").is_file()}
    assert {m.removeprefix("streamjob.worker.") for m in contract["forbidden_modules"]} == modules - OPERATOR_MAY_USE
