"""The storage finder over the runtime's real storage code, on file:// (no servers)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamjob.operator.checkpoints import StorageAccess, StorageSnapshotFinder
from streamjob.operator.errors import StorageUnavailableError
from streamjob.worker.snapshot.metadata import CheckpointMetadata, JobLineage, encode_lineage, encode_metadata

pytestmark = pytest.mark.unit


def meta(kind: str, cid: int, job_id: str) -> bytes:
    now = int(time.time() * 1000)
    return encode_metadata(
        CheckpointMetadata(
            kind=kind,  # type: ignore[arg-type]
            checkpoint_id=cid,
            job_id=job_id,
            job_name="demo",
            namespace="ns",
            trigger_timestamp_ms=now - 5,
            completion_timestamp_ms=now,
            duration_ms=5,
            total_size=100 + cid,
            max_parallelism=128,
            mode="EXACTLY_ONCE",
        )
    )


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def access(root: Path) -> StorageAccess:
    return StorageAccess(
        checkpoints_uri=f"file://{root}/chk", savepoints_uri=f"file://{root}/sp", namespace="ns", name="demo"
    )


def test_latest_is_the_newest_checkpoint_with_a_parsable_metadata(tmp_path: Path) -> None:
    job = tmp_path / "chk" / "ns" / "demo" / "j1"
    write(job / "chk-1" / "_metadata", meta("checkpoint", 1, "j1"))
    write(job / "chk-2" / "_metadata", meta("checkpoint", 2, "j1"))
    write(job / "chk-3" / "state", b"in progress, no _metadata")
    write(job / "chk-4" / "_metadata", b"{garbage")
    found = asyncio.run(StorageSnapshotFinder().retained(access(tmp_path), "j1")).latest
    assert found is not None
    assert (found.kind, found.id, found.job_id, found.size_bytes) == ("checkpoint", 2, "j1", 102)
    assert found.location.endswith("/ns/demo/j1/chk-2") and found.time is not None


def test_completed_checkpoints_skipped_as_corrupt_are_returned_with_their_reason(tmp_path: Path) -> None:
    job = tmp_path / "chk" / "ns" / "demo" / "j1"
    write(job / "chk-1" / "_metadata", b"{older garbage, never read: chk-2 is valid")
    write(job / "chk-2" / "_metadata", meta("checkpoint", 2, "j1"))
    write(job / "chk-3" / "_metadata", b"[" * 100_000 + b"]" * 100_000)  # poison: too deep
    write(job / "chk-4" / "state", b"in progress, no _metadata: not corrupt")
    write(job / "chk-5" / "_metadata", meta("checkpoint", 2, "j1"))  # a copy of another checkpoint's
    write(job / "chk-6" / "_metadata", b"{garbage\nsecond line")
    found = asyncio.run(StorageSnapshotFinder().retained(access(tmp_path), "j1"))
    assert found.latest is not None and found.latest.id == 2
    assert [(s.id, s.job_id) for s in found.skipped] == [(6, "j1"), (5, "j1"), (3, "j1")]
    assert all(s.location == f"file://{job}/chk-{s.id}" for s in found.skipped)
    assert all(s.reason and "\n" not in s.reason and len(s.reason) <= 400 for s in found.skipped)
    assert "describes checkpoint 2, not checkpoint 5" in found.skipped[1].reason
    assert "deep" in found.skipped[2].reason or "nest" in found.skipped[2].reason, found.skipped[2].reason
    # with nothing valid left, the skipped ones are still returned
    for cid in (1, 2):
        (job / f"chk-{cid}" / "_metadata").unlink()
    found = asyncio.run(StorageSnapshotFinder().retained(access(tmp_path), "j1"))
    assert found.latest is None and [s.id for s in found.skipped] == [6, 5, 3]


def test_a_lineage_without_checkpoints_falls_back_to_its_start_savepoint(tmp_path: Path) -> None:
    sp = tmp_path / "sp" / "ns" / "demo" / "savepoint-j0-abc"
    write(sp / "_metadata", meta("savepoint", 7, "j0"))
    lineage = JobLineage(job_id="j2", created_at="2026-01-01T00:00:00Z", restored_from=f"file://{sp}/_metadata")
    write(tmp_path / "chk" / "ns" / "demo" / "j2" / "_lineage.json", encode_lineage(lineage))
    finder = StorageSnapshotFinder()
    found = asyncio.run(finder.retained(access(tmp_path), "j2")).latest
    assert found is not None and found.kind == "savepoint" and found.location.endswith("savepoint-j0-abc")
    assert asyncio.run(finder.retained(access(tmp_path), "nothing-here")).latest is None


def test_savepoint_since_and_discard(tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    write(tmp_path / "sp" / "ns" / "demo" / "savepoint-j1-aaa" / "_metadata", meta("savepoint", 3, "j1"))
    finder = StorageSnapshotFinder()
    found = asyncio.run(finder.savepoint_since(access(tmp_path), before))
    assert found is not None and found.location.endswith("savepoint-j1-aaa")
    assert asyncio.run(finder.savepoint_since(access(tmp_path), before + timedelta(hours=1))) is None
    write(tmp_path / "chk" / "ns" / "demo" / "j1" / "chk-1" / "_metadata", meta("checkpoint", 1, "j1"))
    assert asyncio.run(finder.discard_lineage(access(tmp_path), "j1")) == 1
    assert asyncio.run(finder.retained(access(tmp_path), "j1")).latest is None


def test_storage_errors_are_wrapped() -> None:
    bad = StorageAccess(checkpoints_uri="nope://x", savepoints_uri="nope://x", namespace="ns", name="demo")
    with pytest.raises(StorageUnavailableError, match="cannot list checkpoints of job j1"):
        asyncio.run(StorageSnapshotFinder().retained(bad, "j1"))
