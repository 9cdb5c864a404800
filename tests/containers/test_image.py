"""The streamjob image as built from the repository's Dockerfile, and the examples image built FROM it.

``tests/containers/images.sh`` builds both with dockerd from a Debian base (no registry here); these
tests run the built images for real: the two entry points, the demo job (checkpoints, a killed
worker, exact results) and a job package on ``PYTHONPATH`` as docs/user-guide.md describes.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.containers.conftest import ContainerImages

pytestmark = pytest.mark.containers

DOCKER = "/usr/bin/docker"


def _run(image: str, *argv: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOCKER, "run", "--rm", "--network", "none", image, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_image_runs_both_entry_points_as_the_unprivileged_user(container_images: ContainerImages) -> None:
    image = f"streamjob:{container_images.version}"
    worker = _run(image, "streamjob", "--help")
    assert worker.returncode == 0 and "demo" in worker.stdout, worker.stderr
    operator = _run(image, "streamjob-operator", "--help")
    assert operator.returncode == 0 and "--peering" in operator.stdout, operator.stderr
    who = _run(image, "id", "-u")
    assert who.stdout.strip() == "10001"
    # The installed package, not a source tree, provides streamjob; the stdlib's operator is intact.
    where = _run(image, "python3", "-c", "import operator, streamjob.operator as o; print(operator.eq, o.__file__)")
    assert where.returncode == 0 and "/opt/streamjob/lib/" in where.stdout, where.stderr


def test_demo_recovers_with_exact_results_in_the_image(container_images: ContainerImages) -> None:
    demo = _run(f"streamjob:{container_images.version}", "streamjob", "demo", timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]


def test_examples_image_is_built_from_it_as_the_user_guide_says(container_images: ContainerImages) -> None:
    image = f"streamjob-examples:{container_images.version}"
    history = subprocess.run([DOCKER, "history", "--no-trunc", image], capture_output=True, text=True, check=True)
    assert "COPY --chown=10001:10001" in history.stdout or "COPY dir:" in history.stdout, history.stdout
    probe = _run(
        image, "python3", "-c",
        "import os, examples.balance as b; print(b.build.__name__, os.stat(b.__file__).st_uid)",
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["build", "10001"]
