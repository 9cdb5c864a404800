"""Which jobId of a job to continue: ``latest_lineage`` for ``--restore latest`` without a jobId.

``streamjob run --restore latest`` (and a JobMaster started without a jobId) continues the newest
lineage under ``<checkpoints>/<namespace>/<name>/``: the jobId whose latest restorable snapshot (see
``discovery.find_latest_in_job``) is the most recent. Called by the JobMaster; reads storage only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from streamjob.worker.errors import MetadataError
from streamjob.worker.storage.discovery import SnapshotRef, find_latest_in_job, read_lineage
from streamjob.worker.storage.layout import check_segment
from streamjob.worker.storage.object_store import ObjectStore
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineageCandidate:
    """A jobId with something to restore, and how recent it is (epoch ms)."""

    job_id: str
    latest: SnapshotRef
    recency_ms: int


def _lineage_started_ms(job_store: ObjectStore) -> int:
    try:
        lineage = read_lineage(job_store)
    except MetadataError as err:  # the checkpoints still say how recent the jobId is
        log.warning("ignoring %s", err)
        return 0
    if lineage is None:
        return 0
    try:
        return int(datetime.fromisoformat(lineage.created_at).timestamp() * 1000)
    except ValueError:
        return 0


def lineage_candidates(job_dir: ObjectStore) -> list[LineageCandidate]:
    """Every jobId under ``<checkpoints>/<namespace>/<name>`` with a restorable snapshot, newest first.

    Recency is the later of the latest checkpoint's completion and the jobId's start (a jobId
    started from a savepoint is newer than the job that took the savepoint). A jobId whose recorded
    start snapshot no longer loads raises ``MetadataError`` rather than being skipped.
    """
    found: list[LineageCandidate] = []
    for job_id in job_dir.list_dirs(""):
        job_store = job_dir.at(job_dir.root.join(job_id))
        latest = find_latest_in_job(job_store)
        if latest is None:
            continue
        recency = max(latest.timestamp_ms if latest.kind == "checkpoint" else 0, _lineage_started_ms(job_store))
        found.append(LineageCandidate(job_id, latest, recency))
    return sorted(found, key=lambda c: (c.recency_ms, c.latest.checkpoint_id), reverse=True)


def latest_lineage(
    checkpoints: str | StorageUri,
    namespace: str,
    name: str,
    s3: S3Settings | None = None,
    *,
    stores: StoreFactory | None = None,
) -> str | None:
    """The jobId to continue for ``--restore latest``, or None when no jobId has anything to restore.

    ``stores`` opens the URI (default: a ``StoreFactory`` with ``s3``).
    """
    root = parse_storage_uri(checkpoints).join(check_segment(namespace, "namespace"), check_segment(name, "job name"))
    candidates = lineage_candidates((stores or StoreFactory(s3)).open(root))
    return candidates[0].job_id if candidates else None
