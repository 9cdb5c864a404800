"""The ``_metadata`` file format (versioned JSON) and the jobId lineage record.

``_metadata`` is written last by the checkpoint coordinator (through ``CheckpointStorage``) and read
by restores, discovery (``streamjob.worker.storage.discovery``), the ``streamjob checkpoints`` command
and the operator. It is plain JSON decoded into pydantic models: never pickle, so a writer to the
bucket cannot run code in the workers. ``decode_metadata`` turns every problem (corrupt JSON, a
missing field, an unsupported ``format_version``) into a ``MetadataError`` naming the file and what
to do. Handle paths are relative to the snapshot's base (see ``handles.py``).

A ``_metadata`` is input from whoever can write to the bucket, so reading it is bounded: at most
``MAX_METADATA_BYTES`` are read (``snapshots.read_metadata``), nesting deeper than
``MAX_METADATA_DEPTH`` is refused, and numbers are range-checked; a poisoned file is a
``MetadataError`` like any corrupt one (discovery skips it for "latest" and lists it as CORRUPT),
never a ``RecursionError`` or ``OverflowError`` that would stop every restore.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamjob.worker.errors import MetadataError
from streamjob.worker.snapshot.handles import StateHandle

FORMAT_VERSION = 1
"""Bump on any change an older reader would misread; readers accept 1..FORMAT_VERSION."""

MAX_METADATA_BYTES = 64 * 1024 * 1024
"""A ``_metadata`` larger than this is refused unread (a large job's is well under 1 MiB)."""

MAX_METADATA_DEPTH = 64
"""Deepest nesting of JSON arrays and objects accepted (a written one nests about 8 deep)."""

_MAX_ID = 2**63 - 1
_MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: anything later is no time

LINEAGE_FORMAT_VERSION = 1

SnapshotKind = Literal["checkpoint", "savepoint"]
MODES = ("EXACTLY_ONCE", "AT_LEAST_ONCE")

_WHAT_TO_DO = (
    "this snapshot cannot be restored; restore from an older checkpoint or a savepoint "
    "(`streamjob checkpoints <uri>` lists them)"
)


_LINEAGE_HINT = (
    "it records which snapshot this jobId was started from; restore that snapshot explicitly "
    "(`streamjob run --restore URI`; on Kubernetes the StreamJob's initialSavepointPath)"
)


class SubtaskSnapshot(BaseModel):
    """The state handles of one subtask: keyed (per key-group range), operator, and channel state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtask_index: int = Field(ge=0, le=32767)
    keyed: list[StateHandle] = Field(default_factory=list)
    operator: list[StateHandle] = Field(default_factory=list)
    channel: list[StateHandle] = Field(default_factory=list)
    """In-flight records persisted by an unaligned checkpoint; replayed on restore."""

    def handles(self) -> Iterator[StateHandle]:
        """Every handle of this subtask."""
        yield from self.keyed
        yield from self.operator
        yield from self.channel


class OperatorSnapshot(BaseModel):
    """One stateful operator, keyed by its uid, with one entry per subtask that has state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: str = Field(min_length=1)
    name: str
    parallelism: int = Field(ge=1, le=32768)
    max_parallelism: int = Field(ge=1, le=32768)
    subtasks: list[SubtaskSnapshot] = Field(default_factory=list)


class CheckpointMetadata(BaseModel):
    """The content of a ``_metadata`` file: a completed checkpoint or savepoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    kind: SnapshotKind
    checkpoint_id: int = Field(ge=0, le=_MAX_ID)
    job_id: str
    job_name: str
    namespace: str
    trigger_timestamp_ms: int = Field(ge=0, le=_MAX_TIMESTAMP_MS)
    completion_timestamp_ms: int = Field(ge=0, le=_MAX_TIMESTAMP_MS)
    duration_ms: int = Field(ge=0, le=_MAX_TIMESTAMP_MS)
    total_size: int = Field(ge=0, le=_MAX_ID)
    max_parallelism: int = Field(ge=1, le=32768)
    mode: str = Field(pattern=f"^({'|'.join(MODES)})$")
    """``EXACTLY_ONCE`` or ``AT_LEAST_ONCE`` (a str enum of these values is accepted)."""
    unaligned: bool = False
    """Whether some task stored in-flight data: unaligned from the start, or switched after the aligned timeout."""
    restored_from: str | None = None
    operators: dict[str, OperatorSnapshot] = Field(default_factory=dict)
    shared_files: list[str] = Field(default_factory=list)
    """Paths (relative to the jobId root) of the ``shared/`` files this checkpoint references."""
    source_positions: dict[str, list[Any]] = Field(default_factory=dict)
    """Informational: per source uid, the positions recorded in its operator state."""

    def handles(self) -> Iterator[StateHandle]:
        """Every state handle of every operator and subtask."""
        for op in self.operators.values():
            for subtask in op.subtasks:
                yield from subtask.handles()

    def referenced_shared_files(self) -> frozenset[str]:
        """``shared_files`` plus the path of every handle flagged shared (the two should agree)."""
        return frozenset(self.shared_files) | {h.path for h in self.handles() if h.shared}


class JobLineage(BaseModel):
    """``<jobId>/_lineage.json``: when a jobId started and from which snapshot (None = empty state)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = LINEAGE_FORMAT_VERSION
    job_id: str
    created_at: str
    """ISO-8601 UTC timestamp."""
    restored_from: str | None = None
    """The ``_metadata`` URI the jobId was started from."""


def encode_metadata(meta: CheckpointMetadata) -> bytes:
    """The JSON bytes of ``meta`` (UTF-8, stable key order)."""
    if meta.format_version != FORMAT_VERSION:
        raise MetadataError(
            f"refusing to write _metadata with format_version {meta.format_version}; "
            f"this streamjob writes format {FORMAT_VERSION}"
        )
    return json.dumps(meta.model_dump(mode="json"), indent=1, sort_keys=True).encode("utf-8")


def _describe(err: ValidationError) -> str:
    problems: list[str] = []
    for item in err.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "(document)"
        if item["type"] == "missing":
            problems.append(f"field {where!r} is missing")
        else:
            problems.append(f"field {where!r}: {item['msg']}")
    more = len(err.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _load_json(data: bytes, source: str, what: str, hint: str = _WHAT_TO_DO) -> dict[str, Any]:
    if not data.strip():
        raise MetadataError(f"{what} {source} is empty (the write was interrupted?); {hint}")
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{what} {source} has {len(data)} bytes, more than the {MAX_METADATA_BYTES} a "
            f"snapshot's metadata may have; {hint}"
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError, and out-of-range numbers
        raise MetadataError(f"{what} {source} is corrupted (not valid JSON: {err}); {hint}") from err
    except RecursionError:
        raise MetadataError(
            f"{what} {source} is corrupted (its JSON nests deeper than {MAX_METADATA_DEPTH} levels); {hint}"
        ) from None
    if not isinstance(document, dict):
        raise MetadataError(f"{what} {source} is corrupted (a JSON object was expected); {hint}")
    if nesting_depth(document, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise MetadataError(
            f"{what} {source} is corrupted (its JSON nests deeper than {MAX_METADATA_DEPTH} levels); {hint}"
        )
    return document


def nesting_depth(document: Any, limit: int) -> int:
    """How deep arrays and objects nest in a decoded JSON document, counting up to ``limit + 1``.

    Iterative, so a hostile document cannot exhaust the stack of whoever validates or prints it.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _check_version(document: dict[str, Any], source: str, what: str, supported: int) -> None:
    version = document.get("format_version")
    if version is None:
        raise MetadataError(f"{what} {source} is invalid: field 'format_version' is missing; {_WHAT_TO_DO}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MetadataError(f"{what} {source} is invalid: format_version {version!r} is not an integer; {_WHAT_TO_DO}")
    if version > supported:
        raise MetadataError(
            f"{what} {source} has format_version {version}, newer than this streamjob reads "
            f"(1..{supported}): upgrade streamjob to restore it, or restore an older snapshot"
        )
    if version < 1:
        raise MetadataError(f"{what} {source} has unsupported format_version {version}; {_WHAT_TO_DO}")


def decode_metadata(data: bytes, *, source: str) -> CheckpointMetadata:
    """Parses ``_metadata`` bytes read from ``source`` (a URI, named in every error)."""
    document = _load_json(data, source, "checkpoint metadata")
    _check_version(document, source, "checkpoint metadata", FORMAT_VERSION)
    try:
        return CheckpointMetadata.model_validate(document)
    except ValidationError as err:
        raise MetadataError(f"checkpoint metadata {source} is invalid: {_describe(err)}; {_WHAT_TO_DO}") from err


def encode_lineage(lineage: JobLineage) -> bytes:
    """The JSON bytes of a lineage record."""
    return json.dumps(lineage.model_dump(mode="json"), indent=1, sort_keys=True).encode("utf-8")


def decode_lineage(data: bytes, *, source: str) -> JobLineage:
    """Parses ``_lineage.json`` read from ``source``."""
    document = _load_json(data, source, "lineage file", _LINEAGE_HINT)
    _check_version(document, source, "lineage file", LINEAGE_FORMAT_VERSION)
    try:
        return JobLineage.model_validate(document)
    except ValidationError as err:
        raise MetadataError(f"lineage file {source} is invalid: {_describe(err)}") from err
