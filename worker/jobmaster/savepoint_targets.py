"""Where ``POST /savepoints {"target": ...}`` may write: under the job's savepoint root or a root it allows.

A savepoint holds the job's whole state, so its target is a write to wherever the worker's user (or its
S3 credentials) can reach. ``JobMaster.trigger_savepoint`` checks every given target here first: the
text must be an absolute storage URI (relative paths and ``.``/``..`` segments are refused by
``parse_storage_uri``), and once normalized (``file://`` or plain path, trailing slashes) it must lie
under one of the roots, compared by whole path segments (``/a/bc`` is not under ``/a/b``). Local
paths are compared after resolving symbolic links, so a link inside a root cannot lead out of it.
The roots are the job's savepoints URI and ``JobConfig.allowed_savepoint_roots``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri


class InvalidSavepointTarget(ConfigError):
    """The target is not an absolute storage URI (HTTP 400)."""


class SavepointTargetRefused(ConfigError):
    """The target is outside every allowed root (HTTP 403)."""


def savepoint_roots(savepoints_uri: str | None, allowed: Iterable[str]) -> tuple[StorageUri, ...]:
    """The job's savepoints URI and the extra roots its config allows, parsed."""
    texts = ([savepoints_uri] if savepoints_uri else []) + list(allowed)
    return tuple(parse_storage_uri(text) for text in texts)


def _resolved(uri: StorageUri, resolve: Callable[[str], str]) -> StorageUri:
    return StorageUri("file", "", resolve(uri.path)) if uri.scheme == "file" else uri


def is_under(target: StorageUri, root: StorageUri) -> bool:
    """Whether ``target`` is ``root`` or below it, segment by segment."""
    return target.relative_to(root) is not None


def check_savepoint_target(
    text: str, roots: Sequence[StorageUri], *, resolve: Callable[[str], str] = os.path.realpath
) -> StorageUri:
    """The normalized target when it lies under one of ``roots``; else an error naming the fix."""
    try:
        target = parse_storage_uri(text)
    except ConfigError as err:
        raise InvalidSavepointTarget(f"savepoint target: {err}") from None
    real = _resolved(target, resolve)
    if any(is_under(real, _resolved(root, resolve)) for root in roots):
        return target
    allowed = ", ".join(str(root) for root in roots) or "(none)"
    raise SavepointTargetRefused(
        f"savepoint target {target} is outside the job's savepoint roots ({allowed}); omit the target to use "
        "the job's savepoints directory, or allow another root when starting the job "
        "(`streamjob run --allow-savepoint-root URI`, or allowed_savepoint_roots in job.json)"
    )
