"""Unit tests of the bed's image model (``tests/cluster/images.py``): references and pull decisions."""

from __future__ import annotations

import pytest

from tests.cluster import images
from tests.cluster.images import ImageStore, InvalidImageName

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("image", "key"),
    [
        ("python:3.12-slim", "docker.io/library/python:3.12-slim"),
        ("python", "docker.io/library/python:latest"),
        ("docker.io/library/python:3.12-slim", "docker.io/library/python:3.12-slim"),
        ("index.docker.io/library/python:3.12-slim", "docker.io/library/python:3.12-slim"),
        ("bitnami/kafka:3", "docker.io/bitnami/kafka:3"),
        ("registry.example.com:5000/team/app:1.4.0", "registry.example.com:5000/team/app:1.4.0"),
        ("localhost/app", "localhost/app:latest"),
        ("ghcr.io/a/b@sha256:" + "a" * 64, "ghcr.io/a/b@sha256:" + "a" * 64),
        ("app:1@sha256:" + "b" * 64, "docker.io/library/app@sha256:" + "b" * 64),
    ],
)
def test_references_normalise_like_the_container_runtime(image: str, key: str) -> None:
    assert images.parse(image).key == key


@pytest.mark.parametrize("image", ["Python:3", "app:", "app:bad/tag", "a b", "app@sha256:short", "-app:1", "/app"])
def test_invalid_references_are_rejected(image: str) -> None:
    with pytest.raises(InvalidImageName, match="couldn't parse image name"):
        images.parse(image)


def test_default_images_cover_the_chart_and_the_tests() -> None:
    assert images.chart_image() == "streamjob:0.1.0"
    store = ImageStore(images.default_known())
    for image in ("python:3.12-slim", "streamjob:e2e", "streamjob:0.1.0", "streamjob-examples:0.1.0"):
        assert store.present(image)


def test_default_pull_policy_is_the_api_servers() -> None:
    assert images.default_pull_policy(images.parse("app")) == "Always"
    assert images.default_pull_policy(images.parse("app:latest")) == "Always"
    assert images.default_pull_policy(images.parse("app:1")) == "IfNotPresent"


def test_unknown_image_errs_then_backs_off_then_pulls_once_pushed() -> None:
    store = ImageStore([])
    first = store.ensure("uid", "app:2", None, now=100.0)
    assert first is not None and first.reason == "ErrImagePull"
    assert first.message == (
        'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/app:2": '
        'failed to resolve reference "docker.io/library/app:2": docker.io/library/app:2: not found'
    )
    assert first.retry_in == images.RESYNC_S
    backing_off = store.ensure("uid", "app:2", None, now=100.0 + images.RESYNC_S)
    assert backing_off is not None and backing_off.reason == "ImagePullBackOff"
    assert backing_off.message == f'Back-off pulling image "app:2": ErrImagePull: {first.message}'
    assert backing_off.retry_in == pytest.approx(images.PULL_BACKOFF_S - images.RESYNC_S)
    again = store.ensure("uid", "app:2", None, now=100.0 + images.PULL_BACKOFF_S)
    assert again is not None and again.reason == "ErrImagePull"
    doubled = store.ensure("uid", "app:2", None, now=100.0 + images.PULL_BACKOFF_S + 1)
    assert doubled is not None and doubled.retry_in == pytest.approx(2 * images.PULL_BACKOFF_S - 1)
    other_pod = store.ensure("uid-2", "app:2", None, now=101.5)
    assert other_pod is not None and other_pod.reason == "ErrImagePull"  # back-off is per pod
    store.push("docker.io/library/app:2")
    assert store.ensure("uid", "app:2", None, now=200.0) is None
    assert store.present("app:2")


def test_pull_policies() -> None:
    store = ImageStore(["known:1"])
    store.load("loaded:1")  # on the node, not in the registry
    store.push("pushed:1")  # in the registry, not on the node
    assert store.ensure("u", "loaded:1", "IfNotPresent", 0.0) is None
    always = store.ensure("u", "loaded:1", "Always", 0.0)
    assert always is not None and always.reason == "ErrImagePull"
    never = store.ensure("u", "pushed:1", "Never", 0.0)
    assert never is not None and never.reason == "ErrImageNeverPull"
    assert never.message == 'Container image "pushed:1" is not present with pull policy of Never'
    assert store.ensure("u", "pushed:1", "Always", 0.0) is None  # pulled: now on the node
    assert store.ensure("u", "pushed:1", "Never", 0.0) is None
    assert store.ensure("u", "known:1", "Never", 0.0) is None
    invalid = store.ensure("u", "Bad:1", None, 0.0)
    assert invalid is not None and invalid.reason == "InvalidImageName"
    assert invalid.message.startswith('Failed to apply default image tag "Bad:1": couldn\'t parse image name "Bad:1"')
    store.remove("known:1")
    missing = store.ensure("u", "known:1", "IfNotPresent", 0.0)
    assert missing is not None and missing.reason == "ErrImagePull"
