"""The storage layer stays standalone: the operator imports it, and boto3 lives in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

WORKER = Path(__file__).resolve().parents[2] / "worker"
OWN = [*sorted((WORKER / "storage").glob("*.py")), *sorted((WORKER / "snapshot").glob("*.py"))]
ALLOWED_INTERNAL = (
    "streamjob.worker.errors",
    "streamjob.worker.storage",
    "streamjob.worker.snapshot.metadata",
    "streamjob.worker.snapshot.handles",
)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_s3_store_imports_boto() -> None:
    for path in OWN:
        boto = {m for m in imports_of(path) if m.split(".")[0] in ("boto3", "botocore", "mypy_boto3_s3")}
        if path.name != "s3_store.py":
            assert not boto, f"{path} imports {boto}"


def test_storage_depends_only_on_errors_metadata_and_handles() -> None:
    for path in OWN:
        internal = {m for m in imports_of(path) if m.startswith("streamjob.")}
        stray = {m for m in internal if not m.startswith(ALLOWED_INTERNAL)}
        assert not stray, f"{path} imports {stray}"


def test_importing_storage_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = (
        "import sys, streamjob.worker.storage.checkpoint_storage, streamjob.worker.storage.discovery; "
        "print('boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"
