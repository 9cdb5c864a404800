"""Which lineage (jobId) of a job to continue: the one with the newest completed checkpoint.

Called by the JobMaster for ``streamjob run --restore latest`` when no jobId is given; the
operator always knows its jobId and uses ``discovery.find_latest_retained`` instead.
"""

from __future__ import annotations

from streamjob.worker.storage.discovery import latest_valid_checkpoint
from streamjob.worker.storage.layout import check_segment
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.stores import StoreFactory


def latest_lineage(checkpoints_uri: str, namespace: str, name: str, s3: S3Settings | None = None) -> str | None:
    """The jobId under ``<checkpoints>/<namespace>/<name>/`` whose newest valid checkpoint completed last."""
    root = StoreFactory(s3).open(checkpoints_uri)
    job_dir = root.at(root.root.join(check_segment(namespace, "namespace"), check_segment(name, "name")))
    best: tuple[int, str] | None = None
    for job_id in job_dir.list_dirs(""):
        job_id = job_id.rstrip("/")
        loaded = latest_valid_checkpoint(job_dir.at(job_dir.root.join(job_id)))
        if loaded is None:
            continue
        key = (loaded.metadata.completion_timestamp_ms, job_id)
        if best is None or key > best:
            best = key
    return best[1] if best else None
