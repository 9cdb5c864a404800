"""Image availability on the test bed: which images the node has, which the registry can serve.

The node agent runs processes, not images, but a pod whose image cannot be pulled must still behave
as on a real node: the container stays waiting (``ErrImagePull``, then ``ImagePullBackOff`` while
the pull backs off, or ``ErrImageNeverPull`` / ``InvalidImageName``), the pod stays Pending and no
process is started. Without that, nothing on the bed could exercise the operator's handling of a
broken image. :class:`ImageStore` models the two places an image can be:

- the **registry**: images a pull can fetch (``push``);
- the **node**: images already present (``load``, like ``kind load docker-image``; a successful pull
  puts the image there too).

The known images (both in the registry and preloaded on the node) default to :data:`DEFAULT_IMAGES`
plus the comma-separated ``STREAMJOB_TESTBED_IMAGES``. ``imagePullPolicy`` is honoured the kubelet's
way (``pkg/kubelet/images/image_manager.go``): ``IfNotPresent`` uses a present image, ``Always``
pulls every time (an image only loaded on the node then fails), ``Never`` never pulls. References are
compared in their normalised form (``python:3.12-slim`` is ``docker.io/library/python:3.12-slim``; no
tag means ``:latest``), and the messages are the kubelet's and containerd's.

Callers: ``tests/cluster/node_agent.py`` (``NodeAgent.images``); tests push, load and remove images
through it. Pure apart from its lock: time comes in as an argument.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "streamjob"

#: First pull back-off and its cap (the kubelet's 10 s and 300 s, scaled down for tests).
PULL_BACKOFF_S = 2.0
PULL_BACKOFF_MAX_S = 20.0
#: When a container whose pull failed is looked at again (the kubelet's next pod sync): it shows
#: ``ErrImagePull`` until then and ``ImagePullBackOff`` for the rest of the back-off.
RESYNC_S = 1.0

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN = re.compile(
    r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def _quote(text: str) -> str:
    """Go's ``%q`` (the kubelet's messages quote image names with it)."""
    return json.dumps(text)


class InvalidImageName(ValueError):
    """The reference does not parse (the kubelet's ``InvalidImageName``)."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised image reference."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def key(self) -> str:
        """What identifies the image in a store: the digest if given, else the tag (default ``latest``)."""
        if self.digest:
            return f"{self.domain}/{self.path}@{self.digest}"
        return f"{self.domain}/{self.path}:{self.tag or 'latest'}"


def parse(image: str) -> ImageRef:
    """Parses and normalises ``image`` as the container runtimes do (docker.io, ``library/``)."""
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidImageName(f"couldn't parse image name {_quote(image)}: invalid reference format")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidImageName(f"couldn't parse image name {_quote(image)}: invalid reference format")
    first, _, remainder = rest.partition("/")
    if remainder and (("." in first or ":" in first or first == "localhost") or first.lower() != first):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise InvalidImageName(f"couldn't parse image name {_quote(image)}: invalid reference format")
    else:
        domain, path = "docker.io", rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if path.lower() != path:
        detail = f"invalid reference format: repository name ({path}) must be lowercase"
        raise InvalidImageName(f"couldn't parse image name {_quote(image)}: {detail}")
    if not path or not all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/")):
        raise InvalidImageName(f"couldn't parse image name {_quote(image)}: invalid reference format")
    if len(domain) + 1 + len(path) > 255:
        detail = "repository name must not be more than 255 characters"
        raise InvalidImageName(f"couldn't parse image name {_quote(image)}: {detail}")
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)


def with_default_tag(image: str, ref: ImageRef) -> str:
    """The kubelet's ``applyDefaultImageTag``: ``:latest`` appended when neither tag nor digest is given."""
    return image if ref.tag or ref.digest else f"{image}:latest"


def default_pull_policy(ref: ImageRef) -> str:
    """The API server's default: ``Always`` for ``:latest`` (or no tag), else ``IfNotPresent``."""
    return "Always" if not ref.digest and ref.tag in (None, "latest") else "IfNotPresent"


def chart_image() -> str:
    """The operator image the chart deploys by default (``image.repository:appVersion``)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = values["image"].get("tag") or chart["appVersion"]
    return f"{values['image']['repository']}:{tag}"


#: The images the project's tests and manifests name: the bed's self-tests and tiny chart
#: (``python:3.12-slim``, which an external cluster must hold), the StreamJobs of the operator's
#: e2e tests (``streamjob:e2e``), the chart's default operator image and the examples' job image.
DEFAULT_IMAGES: tuple[str, ...] = ("python:3.12-slim", "streamjob:e2e", chart_image(), "streamjob-examples:0.1.0")


def _jobs_dir() -> str:
    """A directory holding only ``examples`` (a link to the repo's): the examples image's ``/opt/jobs``.

    Not the repo root: its ``operator/`` would shadow the standard library's ``operator`` module.
    """
    jobs = Path(tempfile.gettempdir()) / "streamjob-testbed-jobs"
    jobs.mkdir(exist_ok=True)
    link = jobs / "examples"
    if not link.exists():
        try:
            link.symlink_to(ROOT / "examples", target_is_directory=True)
        except FileExistsError:
            pass  # another agent made it
    return str(jobs)


#: What an image's own ``ENV`` lines would set: the examples' image holds ``examples/`` on its
#: PYTHONPATH (``FROM streamjob``, ``COPY examples/ /opt/jobs/examples/``, ``ENV PYTHONPATH=/opt/jobs``:
#: docs/user-guide.md), so its entrypoints (``examples.balance:build``) import wherever the node
#: agent runs. Below the pod's own env.
IMAGE_ENV: dict[str, Callable[[], dict[str, str]]] = {"streamjob-examples:0.1.0": lambda: {"PYTHONPATH": _jobs_dir()}}


def image_env(image: str) -> dict[str, str]:
    """The environment the image itself sets (empty for most)."""
    try:
        key = parse(image).key
    except InvalidImageName:
        return {}
    return next((env() for name, env in IMAGE_ENV.items() if parse(name).key == key), {})


def default_known() -> list[str]:
    """:data:`DEFAULT_IMAGES` plus the images listed in ``STREAMJOB_TESTBED_IMAGES`` (comma-separated)."""
    extra = [item.strip() for item in os.environ.get("STREAMJOB_TESTBED_IMAGES", "").split(",")]
    return [*DEFAULT_IMAGES, *(item for item in extra if item)]


@dataclass(frozen=True)
class ImageProblem:
    """Why a container cannot start yet: its waiting reason and message, and when to look again."""

    reason: str
    message: str
    retry_in: float


@dataclass
class _Backoff:
    until: float
    delay: float
    last_error: str


class ImageStore:
    """The node's images and the registry behind it; thread-safe (tests change it while pods run)."""

    def __init__(self, known: Iterable[str]) -> None:
        keys = {parse(image).key for image in known}
        self._lock = threading.Lock()
        self._registry: set[str] = set(keys)
        self._node: set[str] = set(keys)
        self._backoffs: dict[tuple[str, str], _Backoff] = {}

    def push(self, image: str) -> None:
        """Makes ``image`` pullable (a push to the registry)."""
        with self._lock:
            self._registry.add(parse(image).key)

    def load(self, image: str) -> None:
        """Puts ``image`` on the node without the registry knowing it (``kind load docker-image``)."""
        with self._lock:
            self._node.add(parse(image).key)

    def remove(self, image: str) -> None:
        """Deletes ``image`` from the node and from the registry."""
        key = parse(image).key
        with self._lock:
            self._registry.discard(key)
            self._node.discard(key)

    def present(self, image: str) -> bool:
        """Whether the node has ``image``."""
        with self._lock:
            return parse(image).key in self._node

    def forget(self, pod_uid: str) -> None:
        """Drops the pull back-offs of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._backoffs if k[0] == pod_uid]:
                del self._backoffs[key]

    def ensure(self, pod_uid: str, image: str, policy: str | None, now: float) -> ImageProblem | None:
        """Makes ``image`` present for a container of pod ``pod_uid`` per ``policy``; ``None`` when it is.

        Pull back-off is per pod and image, as the kubelet keeps it: a failed pull is retried after
        :data:`PULL_BACKOFF_S`, doubling up to :data:`PULL_BACKOFF_MAX_S`; in between the container
        reports ``ImagePullBackOff`` with the previous pull error.
        """
        try:
            ref = parse(image)
        except InvalidImageName as err:
            message = f"Failed to apply default image tag {_quote(image)}: {err}"
            return ImageProblem("InvalidImageName", message, RESYNC_S)
        requested = with_default_tag(image, ref)
        policy = policy or default_pull_policy(ref)
        with self._lock:
            if policy != "Always" and ref.key in self._node:
                return None
            if policy == "Never":
                message = f'Container image "{image}" is not present with pull policy of Never'
                return ImageProblem("ErrImageNeverPull", message, RESYNC_S)
            backoff_key = (pod_uid, requested)
            backoff = self._backoffs.get(backoff_key)
            if backoff is not None and now < backoff.until:
                message = f'Back-off pulling image "{requested}": {backoff.last_error}'
                return ImageProblem("ImagePullBackOff", message, backoff.until - now)
            if ref.key in self._registry:
                self._node.add(ref.key)
                self._backoffs.pop(backoff_key, None)
                return None
            delay = PULL_BACKOFF_S if backoff is None else min(PULL_BACKOFF_MAX_S, backoff.delay * 2)
            message = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref.key}": '
                f'failed to resolve reference "{ref.key}": {ref.key}: not found'
            )
            failure = f"ErrImagePull: {message}"
            self._backoffs[backoff_key] = _Backoff(until=now + delay, delay=delay, last_error=failure)
            return ImageProblem("ErrImagePull", message, RESYNC_S)
