"""Fixtures of the real-container tier (pytest marker ``containers``, ``make test-containers``).

- ``container_images`` (package): the streamjob, examples and pause images built by
  ``tests/containers/images.sh`` (cached in ``~/.cache/streamjob-containers``), as tarballs.
- ``container_cluster`` (package): a :class:`~tests.containers.cluster.ContainerCluster` — the bed's
  control plane with two real kubelets + containerds (nodes 127.0.0.2 and 127.0.0.3), kube-proxy,
  kube-scheduler, the node lifecycle controller and kube-router's NetworkPolicy firewall — with the
  images loaded into both nodes; torn down after the package's tests, so
  the rest of a ``make test`` run does not share the machine with it.
- ``container_kube`` (package): a :class:`~tests.cluster.fixtures.Kube` of that cluster.

The images and the node binaries are built when the session's tests are collected (a cold build
takes longer than one test's timeout). Under ``CI=true`` anything that cannot be built or started
fails the tests; otherwise they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import config as k8s_config

from tests.cluster.controlplane import TestbedUnavailable, build
from tests.cluster.fixtures import Kube
from tests.cluster.kubeapi import KubeApi
from tests.containers.cluster import ClusterUnavailable, ContainerCluster
from tests.support.s3server import fail_or_skip

HERE = Path(__file__).resolve().parent
IMAGES_SCRIPT = HERE / "images.sh"
BUILT = pytest.StashKey[dict[str, "Path | str"]]()
TARGETS = ("streamjob", "examples", "jobs", "pause", "bundle")


@dataclass(frozen=True)
class ContainerImages:
    """The image tarballs (``docker save`` format, what ``ctr images import`` loads)."""

    streamjob: Path
    examples: Path
    jobs: Path
    pause: Path
    bundle: Path  # all of them in one tarball (shared layers once): what the nodes import
    version: str


def _build_images(log_dir: Path) -> dict[str, Path | str]:
    """Runs images.sh for each image; a failure is kept as its message."""
    built: dict[str, Path | str] = {}
    for target in TARGETS:
        log = log_dir / f"images-{target}.log"
        started = time.monotonic()
        with log.open("wb") as err:
            result = subprocess.run(
                ["bash", str(IMAGES_SCRIPT), target], stdout=subprocess.PIPE, stderr=err, timeout=45 * 60, check=False
            )
        if result.returncode != 0:
            return {
                target: f"images.sh {target} failed (exit {result.returncode}); log {log}:\n" + log.read_text()[-3000:]
            }
        built[target] = Path(result.stdout.decode().split()[-1])
        with (log_dir / "build-times.txt").open("a") as times:
            times.write(f"image {target} {time.monotonic() - started:.0f}s\n")
    return built


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the images and the node binaries before any test runs, when a containers test is selected."""
    if session.config.option.collectonly or not any(i.get_closest_marker("containers") for i in session.items):
        return
    log_dir = Path(tempfile.mkdtemp(prefix="streamjob-containers-build-"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[containers] building/finding the images and node binaries (log in {log_dir})")
    built = _build_images(log_dir)
    for target in ("controlplane", "nodes", "kube-router"):
        try:
            built[target] = build(target, log_dir)
        except TestbedUnavailable as err:
            built[target] = str(err)
    session.config.stash[BUILT] = built


def _built(config: pytest.Config, target: str) -> Path:
    found = config.stash.get(BUILT, {}).get(target)
    if not isinstance(found, Path):
        fail_or_skip(f"the real-container tier is unavailable: {found or target + ' was not built'}")
        raise AssertionError("unreachable")
    return found


@pytest.fixture(scope="package")
def container_images(request: pytest.FixtureRequest) -> ContainerImages:
    if os.geteuid() != 0:
        fail_or_skip("the real-container tier needs root (containerd, kubelets, iptables, mounts)")
    version = next(
        line.split('"')[1] for line in (HERE.parents[1] / "pyproject.toml").read_text().splitlines()
        if line.startswith("version = ")
    )  # fmt: skip
    return ContainerImages(
        streamjob=_built(request.config, "streamjob"),
        examples=_built(request.config, "examples"),
        jobs=_built(request.config, "jobs"),
        pause=_built(request.config, "pause"),
        bundle=_built(request.config, "bundle"),
        version=version,
    )


@pytest.fixture(scope="package")
def container_cluster(request: pytest.FixtureRequest, container_images: ContainerImages) -> Iterator[ContainerCluster]:
    root = Path(tempfile.mkdtemp(prefix="streamjob-containers-"))
    cluster = ContainerCluster(
        controlplane=_built(request.config, "controlplane"),
        nodebed=_built(request.config, "nodes"),
        images=[container_images.bundle],
        root=root,
        kube_router=_built(request.config, "kube-router"),
    )
    # A SIGTERM (a CI timeout, a developer's kill) must still run the clean-up below: the cluster
    # leaves mounts, cgroups and iptables rules that no process death removes.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster.start()
    except ClusterUnavailable as err:
        signal.signal(signal.SIGTERM, previous)
        fail_or_skip(f"the real-container cluster did not start: {err}; logs in {root}")
    try:
        yield cluster
    finally:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        failed = request.session.testsfailed
        if failed == 0 and os.environ.get("STREAMJOB_TESTBED_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def container_kube(container_cluster: ContainerCluster) -> Iterator[Kube]:
    assert container_cluster.state is not None
    kubeconfig = container_cluster.state.kubeconfig
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield Kube(
            kubeconfig=kubeconfig, api=api, raw=KubeApi(str(kubeconfig)), external=True, logs=container_cluster.logs
        )
    finally:
        api.close()
