"""The Dockerfile's Python layer, built the way the image builds it, without a Docker engine.

This test needs no container engine. What can go wrong in the image apart from the base layer is
checked here: the pinned closure must install and
satisfy every requirement (``pip check``), the build context that ``.dockerignore`` lets through
must be enough to install streamjob, and the entry points the operator, the JobMaster and the
workers run must start from that install. This test replays the Dockerfile's ``RUN`` steps of the
build stage into a fresh venv from the pins written in the Dockerfile itself, so a stale pin or a
file missing from the context fails here, not at a user's ``docker build``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_pins(text: str) -> list[str]:
    """The ``name==version`` lines of ``constraints.txt``, which the Dockerfile copies and installs."""
    assert "COPY constraints.txt /tmp/constraints.txt" in text, "the Dockerfile no longer installs constraints.txt"
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def context_paths(root: Path, ignore_lines: list[str]) -> list[Path]:
    """Files the Docker build context contains under ``.dockerignore`` (last matching rule wins)."""
    rules = [(line.startswith("!"), line.lstrip("!").rstrip("/")) for line in ignore_lines]
    kept: list[Path] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        included = True
        for negated, pattern in rules:
            bare = pattern.removeprefix("**/")
            hit = (
                fnmatch.fnmatch(rel, pattern)
                or rel.startswith(pattern + "/")
                or (pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in rel.split("/")))
            )
            if hit:
                included = negated
        if included:
            kept.append(path)
    return kept


def run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_pins_cover_the_runtime_requirements_exactly() -> None:
    pins = {line.split("==")[0].lower().replace("_", "-") for line in dockerfile_pins(DOCKERFILE.read_text())}
    assert len(pins) == len(dockerfile_pins(DOCKERFILE.read_text())), "a package is pinned twice"
    for required in ("kopf", "kubernetes", "boto3", "pydantic", "aiohttp", "uvloop", "msgpack", "rocksdict"):
        assert required in pins, f"{required} is a runtime dependency but not pinned in the Dockerfile"


def test_build_stage_installs_from_the_pins_and_the_entry_points_start(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M), "the image must run as the non-root user"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(dockerfile_pins(text)) + "\n")
    context = tmp_path / "context"
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    for path in context_paths(ROOT, [line for line in ignore if line and not line.startswith("#")]):
        target = context / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for needed in ("pyproject.toml", "setup.py", "README.md", "worker/cli.py", "operator/main.py"):
        assert (context / needed).is_file(), f"{needed} is not in the build context (.dockerignore)"
    assert not (context / "tests").exists() and not (context / ".venv").exists()

    venv = tmp_path / "opt-streamjob"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = str(venv / "bin" / "pip")
    env_flags = ["--disable-pip-version-check", "-q"]
    run([pip, "install", *env_flags, "-r", str(constraints)])
    run([pip, "install", *env_flags, "--no-deps", "-c", str(constraints), "."], cwd=context)
    run([pip, "check"])  # every requirement of streamjob and of the pins is met by the pins
    # The Dockerfile's compileall step, run as the image runs it: from the source directory, whose
    # operator/ would shadow the standard library unless the step keeps the cwd off sys.path.
    compile_step = re.search(r"(/opt/streamjob/bin/python[^\n&\\]*-m compileall[^\n&\\]*)", text)
    assert compile_step, "the Dockerfile no longer byte-compiles the install"
    run(compile_step.group(1).replace("/opt/streamjob", str(venv)).split(), cwd=context)

    installed = run([pip, "freeze"]).lower().replace("_", "-")
    for pin in dockerfile_pins(text):
        assert pin.lower().replace("_", "-") in installed, f"{pin} was not installed at its pinned version"
    bin_dir = venv / "bin"
    clean_env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    for entry in (["streamjob", "--help"], ["streamjob-operator", "--help"]):
        done = subprocess.run([str(bin_dir / entry[0]), *entry[1:]], capture_output=True, text=True,
                              env=clean_env, cwd=tmp_path, timeout=120)  # fmt: skip
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (entry, done.stdout, done.stderr)
    imports = "import streamjob.worker.slot, streamjob.worker.jobmaster.jobmaster, streamjob.operator.handlers"
    done = subprocess.run([str(bin_dir / "python"), "-c", imports], capture_output=True, text=True,
                          env=clean_env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
