"""Finding snapshots from storage alone: the latest retained one, restore targets, and listings.

The operator calls ``search_latest_retained`` with the JobMaster dead (last-state upgrades, restarts
after failure); the JobMaster resolves ``streamjob run --restore`` / ``streamjob jobmaster
--restore-from`` (``latest`` or a URI) with ``resolve_restore_target``; ``streamjob checkpoints URI``
prints ``list_snapshots``. Nothing here needs a running job: only the layout of ``layout.py`` and
readable ``_metadata`` files. A ``chk-<n>`` whose ``_metadata`` is missing or does not parse (corrupt,
or poisoned: too large, too deep) is never chosen: it is skipped with a warning and the next older
one is tried. ``search_latest_retained`` also returns the completed checkpoints it skipped, with
the reason, so that the operator can report them (a Warning event on the StreamJob).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from streamjob.worker.errors import ConfigError, MetadataError, StorageError
from streamjob.worker.snapshot.metadata import MAX_METADATA_BYTES, JobLineage, decode_lineage
from streamjob.worker.storage.layout import (
    LINEAGE_FILE,
    METADATA_FILE,
    checkpoint_ids,
    checkpoint_metadata_key,
    choose_latest,
    is_savepoint_dir,
    job_root,
    parse_checkpoint_dir,
)
from streamjob.worker.storage.object_store import ObjectNotFoundError, ObjectStore, ObjectTooLargeError
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.snapshots import LoadedSnapshot, load_snapshot, read_metadata
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotRef:
    """A restorable snapshot, as status and restore decisions need it."""

    kind: str
    checkpoint_id: int
    job_id: str
    location: str
    """The snapshot directory."""
    metadata_uri: str
    base_uri: str
    timestamp_ms: int
    """Completion time (epoch milliseconds)."""
    total_size: int
    duration_ms: int

    @classmethod
    def of(cls, loaded: LoadedSnapshot) -> SnapshotRef:
        """The reference to a loaded snapshot."""
        m = loaded.metadata
        return cls(
            m.kind,
            m.checkpoint_id,
            m.job_id,
            loaded.directory,
            loaded.metadata_uri,
            loaded.base_uri,
            m.completion_timestamp_ms,
            m.total_size,
            m.duration_ms,
        )


@dataclass(frozen=True)
class SkippedCheckpoint:
    """A ``chk-<n>`` newer than the latest restorable one whose ``_metadata`` exists but cannot be used."""

    checkpoint_id: int
    location: str
    """The checkpoint directory."""
    reason: str
    """One line: why its ``_metadata`` was refused."""


@dataclass(frozen=True)
class LatestSearch:
    """The latest restorable snapshot of a jobId (None: an empty start) and the checkpoints skipped for it."""

    ref: SnapshotRef | None
    skipped: tuple[SkippedCheckpoint, ...] = ()
    """Newest first; only those newer than ``ref`` (older ones are never read)."""


#: Longest reason carried in a ``SkippedCheckpoint`` (it ends up in events and status).
MAX_REASON_CHARS = 400


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (error messages may quote file content)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class SnapshotRow:
    """One line of ``streamjob checkpoints URI``; ``problem`` is set for an unreadable ``_metadata``."""

    kind: str
    id: int | None
    job_id: str | None
    time: datetime
    size: int
    location: str
    problem: str | None = None


def _store_of(where: str | StorageUri | ObjectStore, s3: S3Settings | None) -> ObjectStore:
    return where if isinstance(where, ObjectStore) else StoreFactory(s3).open(where)


def latest_valid_checkpoint(
    job_store: ObjectStore, skipped: list[SkippedCheckpoint] | None = None
) -> LoadedSnapshot | None:
    """The newest ``chk-<n>`` under a jobId root whose ``_metadata`` exists, parses and matches ``n``.

    Completed checkpoints refused on the way (their ``_metadata`` exists but is corrupt, poisoned or
    describes another snapshot) are appended to ``skipped``, newest first; a ``chk-<n>`` without
    ``_metadata`` is one in progress or failed and is passed over silently.
    """
    loaded: dict[int, LoadedSnapshot] = {}

    def skip(cid: int, reason: str) -> bool:
        location = job_store.uri(checkpoint_metadata_key(cid)).rsplit("/", 1)[0]
        log.warning("skipping checkpoint %s: %s", cid, reason)  # the reason names the file
        if skipped is not None:
            skipped.append(SkippedCheckpoint(cid, location, one_line(reason)))
        return False

    def is_valid(cid: int) -> bool:
        key = checkpoint_metadata_key(cid)
        try:
            meta = read_metadata(job_store, key)
        except ObjectNotFoundError:
            return False
        except MetadataError as err:  # poison or damage: an older checkpoint is the latest restorable one
            return skip(cid, str(err))
        if meta.kind != "checkpoint" or meta.checkpoint_id != cid:
            return skip(cid, f"{job_store.uri(key)} describes {meta.kind} {meta.checkpoint_id}, not checkpoint {cid}")
        loaded[cid] = LoadedSnapshot(meta, job_store.uri(key), str(job_store.root))
        return True

    chosen = choose_latest(checkpoint_ids(job_store.list_dirs("")), is_valid)
    return None if chosen is None else loaded[chosen]


def read_lineage(job_store: ObjectStore) -> JobLineage | None:
    """The jobId's ``_lineage.json``, or None when it was never written."""
    try:
        data = job_store.get(LINEAGE_FILE, max_bytes=MAX_METADATA_BYTES)
    except ObjectNotFoundError:
        return None
    except ObjectTooLargeError as err:
        raise MetadataError(f"lineage file {err}") from err
    return decode_lineage(data, source=job_store.uri(LINEAGE_FILE))


def find_latest_retained(
    checkpoints: str | StorageUri | ObjectStore, namespace: str, name: str, job_id: str, *, s3: S3Settings | None = None
) -> SnapshotRef | None:
    """The snapshot the next attempt of ``job_id`` must restore, or None for an empty start.

    The newest valid ``chk-<n>`` under the jobId; else the snapshot ``_lineage.json`` records the
    jobId was started from (a ``MetadataError`` if that one no longer loads: state is never dropped
    silently); else None. ``checkpoints`` is the checkpoints root (a URI or a store rooted there).
    """
    root = _store_of(checkpoints, s3)
    return find_latest_in_job(root.at(job_root(root.root, namespace, name, job_id)))


def resolve_restore_target(text: str, latest: ObjectStore | None = None, *, s3: S3Settings | None = None) -> str | None:
    """The ``_metadata`` URI to restore from, for ``--restore latest|URI`` (``--restore-from`` of the JobMaster).

    ``latest`` needs ``latest``, a store rooted at the job's jobId root (``CheckpointStorage`` passes
    its own), and returns None when the jobId has nothing to restore. A URI may name a snapshot
    directory, its ``_metadata`` file, or a jobId directory (its latest valid checkpoint is used);
    the snapshot is loaded to make sure it parses.
    """
    if text.strip() == "latest":
        if latest is None:
            raise ConfigError(
                "restoring 'latest' needs the job's checkpoint storage (checkpoints URI, namespace, name and jobId)"
            )
        found = find_latest_in_job(latest)
        return None if found is None else found.metadata_uri
    uri = parse_storage_uri(text)
    opener = latest.at if latest is not None else StoreFactory(s3).open
    if uri.name != METADATA_FILE:
        store = opener(uri)
        if not store.exists(METADATA_FILE) and checkpoint_ids(store.list_dirs("")):
            found = find_latest_in_job(store)
            if found is None:
                raise MetadataError(f"{uri} holds no completed checkpoint with a readable _metadata")
            return found.metadata_uri
    return load_snapshot(opener, uri).metadata_uri


def search_latest_retained(
    checkpoints: str | StorageUri | ObjectStore, namespace: str, name: str, job_id: str, *, s3: S3Settings | None = None
) -> LatestSearch:
    """``find_latest_retained`` with the completed checkpoints it had to skip (the operator reports them)."""
    root = _store_of(checkpoints, s3)
    return search_latest_in_job(root.at(job_root(root.root, namespace, name, job_id)))


def find_latest_in_job(job_store: ObjectStore) -> SnapshotRef | None:
    """``find_latest_retained`` for a store already rooted at a jobId directory."""
    return search_latest_in_job(job_store).ref


def search_latest_in_job(job_store: ObjectStore) -> LatestSearch:
    """``search_latest_retained`` for a store already rooted at a jobId directory."""
    skipped: list[SkippedCheckpoint] = []
    latest = latest_valid_checkpoint(job_store, skipped)
    if latest is not None:
        return LatestSearch(SnapshotRef.of(latest), tuple(skipped))
    lineage = read_lineage(job_store)
    if lineage is None or lineage.restored_from is None:
        return LatestSearch(None, tuple(skipped))
    try:
        return LatestSearch(SnapshotRef.of(load_snapshot(job_store.at, lineage.restored_from)), tuple(skipped))
    except MetadataError as err:
        raise MetadataError(
            f"job {lineage.job_id} has no completed checkpoint and was started from "
            f"{lineage.restored_from}, which cannot be loaded any more: {err}"
        ) from err


def _kind_of_dir(directory: str) -> str:
    name = directory.rsplit("/", 1)[-1]
    if parse_checkpoint_dir(name) is not None:
        return "checkpoint"
    return "savepoint" if is_savepoint_dir(name) else "snapshot"


def list_snapshots(uri: str | StorageUri | ObjectStore, *, s3: S3Settings | None = None) -> list[SnapshotRow]:
    """Every ``_metadata`` under a checkpoints or savepoints root (or any directory below), newest first.

    Completed snapshots are listed with their metadata; an unreadable ``_metadata`` (corrupt,
    poisoned, too large, unreadable) is listed with its ``problem`` and never stops the listing.
    Directories without ``_metadata`` (in progress or failed) are not listed.
    """
    store = _store_of(uri, s3)
    rows: list[SnapshotRow] = []
    for info in store.list(""):
        if info.key != METADATA_FILE and not info.key.endswith(f"/{METADATA_FILE}"):
            continue
        directory = store.uri(info.key).rsplit("/", 1)[0]
        try:
            meta = read_metadata(store, info.key)
        except StorageError as err:  # corrupt, poisoned, vanished or unreadable: listed as CORRUPT
            rows.append(
                SnapshotRow(
                    _kind_of_dir(directory),
                    parse_checkpoint_dir(directory.rsplit("/", 1)[-1]),
                    None,
                    info.last_modified,
                    info.size,
                    directory,
                    str(err),
                )
            )
            continue
        when = datetime.fromtimestamp(meta.completion_timestamp_ms / 1000, tz=UTC)
        rows.append(SnapshotRow(meta.kind, meta.checkpoint_id, meta.job_id, when, meta.total_size, directory))
    return sorted(rows, key=lambda r: (r.time, r.id if r.id is not None else -1), reverse=True)


def render_snapshot_table(rows: list[SnapshotRow]) -> str:
    """The text table ``streamjob checkpoints URI`` prints (one header line, one line per row)."""
    header = ("KIND", "ID", "JOB", "TIME (UTC)", "SIZE", "LOCATION")
    lines = [header]
    for row in rows:
        kind = row.kind if row.problem is None else f"{row.kind} CORRUPT"
        lines.append(
            (
                kind,
                "-" if row.id is None else str(row.id),
                row.job_id or "-",
                row.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                str(row.size),
                row.location,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    ]
    text += [f"! CORRUPT {row.location}: {row.problem}" for row in rows if row.problem is not None]
    return "\n".join(text)
