"""The checkpoint storage layout of docs/architecture.md, as pure functions (no I/O).

::

    <checkpointsUri>/<namespace>/<name>/<jobId>/chk-<n>/_metadata      written last = completed
    <checkpointsUri>/<namespace>/<name>/<jobId>/chk-<n>/<uid>/<subtask>/<file>
    <checkpointsUri>/<namespace>/<name>/<jobId>/shared/<file>           incremental, shared by checkpoints
    <checkpointsUri>/<namespace>/<name>/<jobId>/_lineage.json           written when the jobId starts
    <savepointsUri>/<namespace>/<name>/savepoint-<id>/_metadata         self-contained
    <savepointsUri>/<namespace>/<name>/savepoint-<id>/<uid>/<subtask>/<file>

Handle paths of checkpoints are relative to the jobId root; those of savepoints to the savepoint
directory. Used by ``CheckpointStorage``, ``discovery`` and ``retention`` (and readable by the
operator, which may import the worker's storage modules). The decisions (which checkpoints are
completed, which one is the latest valid) are here so they can be unit-tested on plain listings.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from urllib.parse import quote

from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.object_store import ObjectInfo
from streamjob.worker.storage.uri import StorageUri

METADATA_FILE = "_metadata"
LINEAGE_FILE = "_lineage.json"
SHARED_DIR = "shared"
CHECKPOINT_DIR_PREFIX = "chk-"
SAVEPOINT_DIR_PREFIX = "savepoint-"

_CHECKPOINT_DIR = re.compile(r"^chk-(0|[1-9][0-9]*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_segment(value: str, what: str) -> str:
    """Validates a namespace, resource name or jobId used as one path segment."""
    if not _SEGMENT.match(value) or len(value) > 253:
        raise ConfigError(
            f"{what} {value!r} cannot be used in a storage path: use letters, digits, "
            "'.', '_' and '-' (starting with a letter or digit)"
        )
    return value


def encode_uid(uid: str) -> str:
    """A path segment for an operator uid (percent-encoding anything but ``A-Za-z0-9-_.~``)."""
    if not uid:
        raise ConfigError("an operator uid used in a storage path must not be empty")
    encoded = quote(uid, safe="-_.~")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def job_root(checkpoints: StorageUri, namespace: str, name: str, job_id: str) -> StorageUri:
    """``<checkpointsUri>/<namespace>/<name>/<jobId>``: the base of every checkpoint handle path."""
    return checkpoints.join(
        check_segment(namespace, "namespace"), check_segment(name, "job name"), check_segment(job_id, "jobId")
    )


def savepoints_root(savepoints: StorageUri, namespace: str, name: str) -> StorageUri:
    """``<savepointsUri>/<namespace>/<name>``: where savepoints of a job go by default."""
    return savepoints.join(check_segment(namespace, "namespace"), check_segment(name, "job name"))


def checkpoint_dir_name(checkpoint_id: int) -> str:
    """``chk-<n>``."""
    if checkpoint_id < 0:
        raise ValueError(f"checkpoint ids are non-negative, got {checkpoint_id}")
    return f"{CHECKPOINT_DIR_PREFIX}{checkpoint_id}"


def parse_checkpoint_dir(name: str) -> int | None:
    """The id of a ``chk-<n>`` directory name, or None for any other name."""
    match = _CHECKPOINT_DIR.match(name.rstrip("/"))
    return int(match.group(1)) if match else None


def checkpoint_metadata_key(checkpoint_id: int) -> str:
    """``chk-<n>/_metadata`` relative to the jobId root."""
    return f"{checkpoint_dir_name(checkpoint_id)}/{METADATA_FILE}"


def subtask_file_key(operator_uid: str, subtask_index: int, name: str) -> str:
    """``<uid>/<subtask>/<name>``: a subtask's file relative to its snapshot directory."""
    return f"{encode_uid(operator_uid)}/{subtask_index}/{name}"


def checkpoint_file_key(checkpoint_id: int, operator_uid: str, subtask_index: int, name: str) -> str:
    """``chk-<n>/<uid>/<subtask>/<name>`` relative to the jobId root."""
    return f"{checkpoint_dir_name(checkpoint_id)}/{subtask_file_key(operator_uid, subtask_index, name)}"


def shared_file_key(name: str) -> str:
    """``shared/<name>`` relative to the jobId root (names are content-addressed by the backends)."""
    return f"{SHARED_DIR}/{name}"


def checkpoint_ids(dir_names: Iterable[str]) -> list[int]:
    """The ids of the ``chk-<n>`` names among ``dir_names``, ascending (complete or not)."""
    return sorted({cid for cid in map(parse_checkpoint_dir, dir_names) if cid is not None})


def _key_of(entry: str | ObjectInfo) -> str:
    return entry.key if isinstance(entry, ObjectInfo) else entry


def completed_checkpoint_ids(listing: Iterable[str | ObjectInfo]) -> list[int]:
    """Ids of the checkpoints whose ``chk-<n>/_metadata`` is in a listing of the jobId root, ascending."""
    found: set[int] = set()
    for entry in listing:
        head, _, tail = _key_of(entry).partition("/")
        if tail == METADATA_FILE:
            cid = parse_checkpoint_dir(head)
            if cid is not None:
                found.add(cid)
    return sorted(found)


def choose_latest(candidates: Iterable[int], is_valid: Callable[[int], bool]) -> int | None:
    """The highest candidate id for which ``is_valid`` holds (tried newest first), or None.

    ``is_valid`` is where the caller checks that ``_metadata`` exists and parses; an id whose check
    fails is never chosen, however new.
    """
    for cid in sorted(set(candidates), reverse=True):
        if is_valid(cid):
            return cid
    return None


def savepoint_dir_name(suffix: str) -> str:
    """``savepoint-<suffix>``: the one place a savepoint directory is named (see ``is_savepoint_dir``)."""
    if not suffix or "/" in suffix:
        raise ValueError(f"a savepoint directory suffix must be one non-empty path segment, got {suffix!r}")
    return f"{SAVEPOINT_DIR_PREFIX}{suffix}"


def new_savepoint_name(job_id: str, *, token: str | None = None) -> str:
    """``savepoint-<first 6 chars of jobId>-<12 random hex>`` (as Flink names them)."""
    return savepoint_dir_name(f"{job_id[:6]}-{token if token is not None else secrets.token_hex(6)}")


def is_savepoint_dir(name: str) -> bool:
    """Whether a directory name is a savepoint directory's (``savepoint_dir_name``)."""
    return name.startswith(SAVEPOINT_DIR_PREFIX) and len(name) > len(SAVEPOINT_DIR_PREFIX)


def is_savepoint_location(location: str | None) -> bool:
    """Whether a snapshot location (its directory or its ``_metadata``; a URI or a path) is a savepoint."""
    if not location:
        return False
    parts = [p for p in location.rstrip("/").split("/") if p and p != METADATA_FILE]
    return bool(parts) and is_savepoint_dir(parts[-1])


def snapshot_dir_of(uri: StorageUri) -> StorageUri:
    """The snapshot directory for a URI naming either the directory or its ``_metadata`` file."""
    return uri.parent if uri.name == METADATA_FILE else uri


def snapshot_base(metadata_uri: StorageUri, kind: str) -> StorageUri:
    """The base handle paths are relative to: the jobId root (checkpoints) or the savepoint dir."""
    directory = snapshot_dir_of(metadata_uri)
    return directory.parent if kind == "checkpoint" else directory
