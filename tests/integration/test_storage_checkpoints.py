from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.errors import MetadataError, StorageError
from streamjob.worker.snapshot.handles import SnapshotReader, SnapshotWriter, StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage, JobStorageLocation, dispose_savepoint
from streamjob.worker.storage.discovery import (
    find_latest_retained,
    list_snapshots,
    render_snapshot_table,
    resolve_restore_target,
)
from streamjob.worker.storage.lineages import latest_lineage
from streamjob.worker.storage.object_store import ObjectStore
from streamjob.worker.storage.snapshot_files import CorruptStateError
from streamjob.worker.storage.uri import parse_storage_uri
from tests.integration.test_storage_support import Root, make_root

pytestmark = pytest.mark.integration

NS, NAME = "default", "wordcount"


@pytest.fixture(params=["file", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Root:
    return make_root(request.param, request, tmp_path)


def storage(root: Root, job_id: str = "job-1") -> CheckpointStorage:
    location = JobStorageLocation.parse(
        f"{root.uri}/checkpoints", f"{root.uri}/savepoints", namespace=NS, name=NAME, job_id=job_id
    )
    return CheckpointStorage(location, stores=root.factory(), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))


def metadata(
    cid: int,
    handles: list[StateHandle],
    *,
    kind: str = "checkpoint",
    job_id: str = "job-1",
    restored_from: str | None = None,
) -> CheckpointMetadata:
    shared = sorted({h.path for h in handles if h.shared})
    fields: dict[str, Any] = dict(
        kind=kind,
        checkpoint_id=cid,
        job_id=job_id,
        job_name=NAME,
        namespace=NS,
        trigger_timestamp_ms=1_000 * cid,
        completion_timestamp_ms=1_000 * cid + 50,
        duration_ms=50,
        total_size=sum(h.size for h in handles),
        max_parallelism=128,
        mode="EXACTLY_ONCE",
        restored_from=restored_from,
        shared_files=shared,
        operators={
            "count": OperatorSnapshot(
                uid="count",
                name="Count",
                parallelism=1,
                max_parallelism=128,
                subtasks=[SubtaskSnapshot(subtask_index=0, keyed=handles)],
            )
        },
    )
    return CheckpointMetadata(**fields)


def complete_checkpoint(st: CheckpointStorage, cid: int, shared: dict[str, bytes] | None = None) -> list[StateHandle]:
    writer = st.writer(cid, "count", 0)
    handles = [writer.write("keyed-0", f"state of {cid}".encode(), key_groups=(0, 127))]
    for name, data in (shared or {}).items():
        handles.append(writer.write_shared(name, data))
    st.write_metadata(metadata(cid, handles, job_id=st.location.job_id))
    return handles


def test_writer_reader_round_trip_verifies_checksums(root: Root) -> None:
    st = storage(root)
    writer: SnapshotWriter = st.writer(1, "count", 3)
    keyed = writer.write("keyed-0", b"keyed bytes", key_groups=(0, 63))
    op = writer.write("operator-0", b"op")
    shared = writer.write_shared("count-kg0-abc.keyed", b"shared bytes")
    assert keyed.path == "chk-1/count/3/keyed-0"
    assert (keyed.key_group_start, keyed.key_group_end) == (0, 63)
    assert shared.path == "shared/count-kg0-abc.keyed" and shared.shared
    assert writer.shared_exists("count-kg0-abc.keyed")
    assert not writer.shared_exists("other")
    assert not writer.is_savepoint and writer.checkpoint_id == 1
    uri = st.write_metadata(metadata(1, [keyed, op, shared]))
    assert uri == f"{root.uri}/checkpoints/{NS}/{NAME}/job-1/chk-1/_metadata"

    loaded = st.load_metadata(uri)
    assert loaded.base_uri == st.checkpoint_base_uri
    reader: SnapshotReader = st.reader(loaded.base_uri)
    assert [reader.read(h) for h in loaded.metadata.handles()] == [b"keyed bytes", b"op", b"shared bytes"]

    st.job_store.put(keyed.path, b"keyed bytez")
    with pytest.raises(CorruptStateError, match="sha256") as info:
        reader.read(keyed)
    assert keyed.path in str(info.value)
    st.job_store.put(keyed.path, b"short")
    with pytest.raises(CorruptStateError, match="truncated"):
        reader.read(keyed)
    st.job_store.delete(keyed.path)
    with pytest.raises(StorageError, match="missing"):
        reader.read(keyed)
    with pytest.raises(StorageError):
        reader.read(StateHandle(path="../../etc/passwd", size=1, sha256="0" * 64))


def test_writer_is_thread_safe_and_names_unique(root: Root) -> None:
    st = storage(root)
    writer = st.writer(2, "count", 0)
    threads = [threading.Thread(target=writer.write, args=(f"part-{i}", bytes([i]) * 10)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(h.path for h in writer.written()) == sorted(f"chk-2/count/0/part-{i}" for i in range(16))
    with pytest.raises(StorageError, match="unique"):
        writer.write("part-0", b"again")


def test_write_metadata_is_last_once_and_consistent(root: Root) -> None:
    st = storage(root)
    handles = complete_checkpoint(st, 1)
    st.write_metadata(metadata(1, handles))  # an identical retry is fine
    with pytest.raises(MetadataError, match="already exists"):
        st.write_metadata(metadata(1, handles).model_copy(update={"duration_ms": 1}))
    with pytest.raises(MetadataError, match="savepoint_dir"):
        st.write_metadata(metadata(2, [], kind="savepoint"))
    with pytest.raises(MetadataError, match="job other"):
        st.write_metadata(metadata(2, [], job_id="other"))


def test_next_checkpoint_id_counts_incomplete_dirs_and_restarts(root: Root) -> None:
    st = storage(root)
    assert st.next_checkpoint_id() == 1
    complete_checkpoint(st, 1)
    st.writer(2, "count", 0).write("keyed-0", b"unfinished")
    assert st.next_checkpoint_id() == 3
    assert storage(root).next_checkpoint_id() == 3  # a restarted JobMaster of the same jobId
    assert storage(root, "job-2").next_checkpoint_id() == 1
    assert st.next_checkpoint_id(at_least=10) == 10


def test_discard_removes_a_failed_checkpoint_but_not_a_completed_one(root: Root) -> None:
    st = storage(root)
    complete_checkpoint(st, 1)
    writer = st.writer(2, "count", 0)
    writer.write("keyed-0", b"x")
    writer.write("keyed-1", b"y")
    assert st.discard(2) == 2
    assert not [i for i in st.job_store.list("") if i.key.startswith("chk-2/")]
    with pytest.raises(StorageError, match="completed"):
        st.discard(1)
    directory = st.new_savepoint_dir()
    st.writer(3, "count", 0, savepoint_dir=directory).write("keyed-0", b"x")
    with pytest.raises(StorageError, match="not a savepoint"):
        st.discard(3, savepoint_dir=directory.rsplit("/", 1)[0])
    assert st.discard(3, savepoint_dir=directory) == 1
    assert root.factory().open(directory).list("") == []


def test_retention_deletes_the_right_files(root: Root) -> None:
    st = storage(root)
    complete_checkpoint(st, 1, {"a": b"A", "b": b"B"})
    complete_checkpoint(st, 2, {"b": b"B", "c": b"C"})
    st.writer(3, "count", 0).write("keyed-0", b"aborted")  # incomplete, older than the kept ones
    complete_checkpoint(st, 4, {"c": b"C", "d": b"D"})
    complete_checkpoint(st, 5, {"d": b"D"})
    st.writer(6, "count", 0).write("keyed-0", b"in progress")
    plan = st.apply_retention(2)
    assert plan.retained_ids == (5, 4)
    assert plan.delete_ids == (1, 2, 3)
    assert plan.delete_shared == ("shared/a", "shared/b")
    keys = {i.key for i in st.job_store.list("")}
    assert keys == {
        "chk-4/_metadata",
        "chk-4/count/0/keyed-0",
        "chk-5/_metadata",
        "chk-5/count/0/keyed-0",
        "chk-6/count/0/keyed-0",
        "shared/c",
        "shared/d",
    }
    loaded = st.load_metadata(f"{st.checkpoint_base_uri}/chk-4")
    reader = st.reader(loaded.base_uri)
    assert [reader.read(h) for h in loaded.metadata.handles()] == [b"state of 4", b"C", b"D"]
    assert st.apply_retention(2).empty


def test_find_latest_retained_skips_missing_and_corrupt_metadata(root: Root) -> None:
    st = storage(root)
    for cid in (1, 2, 3, 4):
        complete_checkpoint(st, cid)
    st.writer(5, "count", 0).write("keyed-0", b"no metadata yet")
    checkpoints = f"{root.uri}/checkpoints"

    def latest() -> int | None:
        ref = find_latest_retained(checkpoints, NS, NAME, "job-1", s3=root.settings)
        return None if ref is None else ref.checkpoint_id

    assert latest() == 4
    st.job_store.delete("chk-4/_metadata")
    assert latest() == 3
    st.job_store.put("chk-3/_metadata", b'{"format_version": 1, "kind": "checkp')
    assert latest() == 2
    st.job_store.put("chk-2/_metadata", b"")
    assert latest() == 1
    ref = find_latest_retained(root.store("checkpoints"), NS, NAME, "job-1")
    assert ref is not None
    assert ref.kind == "checkpoint" and ref.location == f"{st.checkpoint_base_uri}/chk-1"
    assert ref.metadata_uri == f"{st.checkpoint_base_uri}/chk-1/_metadata"
    assert ref.timestamp_ms == 1_050 and ref.duration_ms == 50
    assert st.latest_retained() == ref
    assert st.resolve_restore_target("latest") == ref.metadata_uri
    assert find_latest_retained(checkpoints, NS, NAME, "job-unknown", s3=root.settings) is None


def take_savepoint(st: CheckpointStorage, target: str | None = None) -> str:
    directory = st.new_savepoint_dir(target)
    writer = st.writer(7, "count", 0, savepoint_dir=directory)
    assert writer.is_savepoint and not writer.shared_exists("x")
    handles = [
        writer.write("keyed-0", b"savepoint state", key_groups=(0, 127)),
        writer.write_shared("count-kg0.keyed", b"full copy"),
    ]
    assert all(not h.shared for h in handles)
    return st.write_metadata(metadata(7, handles, kind="savepoint", job_id=st.location.job_id), savepoint_dir=directory)


def copy_tree(src: ObjectStore, dst: ObjectStore) -> None:
    for info in src.list(""):
        dst.put(info.key, src.get(info.key))


def read_all(st: CheckpointStorage, uri: str) -> list[bytes]:
    loaded = st.load_metadata(uri)
    reader = st.reader(loaded.base_uri)
    return [reader.read(h) for h in loaded.metadata.handles()]


def test_savepoints_are_self_contained_and_relocatable(root: Root, request: pytest.FixtureRequest) -> None:
    st = storage(root)
    metadata_uri = take_savepoint(st)
    directory = metadata_uri.rsplit("/", 1)[0]
    assert directory.startswith(f"{root.uri}/savepoints/{NS}/{NAME}/savepoint-job-1-")
    assert not [i for i in st.job_store.list("") if i.key.startswith("shared/")]
    assert read_all(st, directory) == [b"savepoint state", b"full copy"]

    moved = f"{root.uri}/moved/somewhere/sp"
    copy_tree(root.factory().open(directory), root.factory().open(moved))
    root.factory().open(directory).delete_prefix("")
    assert read_all(st, moved) == [b"savepoint state", b"full copy"]
    assert read_all(st, f"{moved}/_metadata") == [b"savepoint state", b"full copy"]

    in_target = st.new_savepoint_dir(f"{root.uri}/my-target")
    assert in_target.startswith(f"{root.uri}/my-target/savepoint-job-1-")
    assert st.new_savepoint_dir() != st.new_savepoint_dir()

    if root.settings is not None:  # and to another bucket
        s3 = request.getfixturevalue("s3")
        client = s3.client()
        try:
            client.create_bucket(Bucket="streamjob-other")
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        other = f"s3://streamjob-other/{parse_storage_uri(root.uri).path}/copied"
        copy_tree(root.factory().open(moved), root.factory().open(other))
        assert read_all(st, other) == [b"savepoint state", b"full copy"]


def test_new_job_from_savepoint_falls_back_to_it_via_lineage(root: Root) -> None:
    old = storage(root, "job-1")
    savepoint = take_savepoint(old)
    new = storage(root, "job-2")
    lineage = new.write_lineage(savepoint)
    assert lineage.restored_from == savepoint and lineage.created_at.startswith("2026-01-01")
    assert new.write_lineage(None) == lineage  # a restart keeps the first record
    ref = new.latest_retained()
    assert ref is not None and ref.kind == "savepoint" and ref.metadata_uri == savepoint
    assert ref.base_uri == savepoint.rsplit("/", 1)[0]
    complete_checkpoint(new, 1)
    ref = new.latest_retained()
    assert ref is not None and ref.kind == "checkpoint" and ref.checkpoint_id == 1
    fresh = storage(root, "job-3")
    fresh.write_lineage(None)
    assert fresh.latest_retained() is None


def test_lost_lineage_savepoint_is_an_error_not_an_empty_start(root: Root) -> None:
    old = storage(root, "job-1")
    savepoint = take_savepoint(old)
    new = storage(root, "job-2")
    new.write_lineage(savepoint)
    root.factory().open(savepoint.rsplit("/", 1)[0]).delete("_metadata")
    with pytest.raises(MetadataError, match="was started from"):
        new.latest_retained()


def test_resolve_restore_target_accepts_dirs_metadata_and_job_roots(root: Root) -> None:
    st = storage(root)
    complete_checkpoint(st, 1)
    complete_checkpoint(st, 2)
    savepoint = take_savepoint(st)
    sp_dir = savepoint.rsplit("/", 1)[0]
    assert resolve_restore_target(sp_dir, s3=root.settings) == savepoint
    assert resolve_restore_target(savepoint, s3=root.settings) == savepoint
    chk1 = f"{st.checkpoint_base_uri}/chk-1"
    assert st.resolve_restore_target(chk1) == f"{chk1}/_metadata"
    assert st.resolve_restore_target(st.checkpoint_base_uri) == f"{st.checkpoint_base_uri}/chk-2/_metadata"
    with pytest.raises(MetadataError, match="does not exist"):
        st.resolve_restore_target(f"{root.uri}/nothing/here")
    st.writer(3, "count", 0).write("keyed-0", b"x")
    with pytest.raises(MetadataError, match="does not exist"):
        st.resolve_restore_target(f"{st.checkpoint_base_uri}/chk-3")
    assert storage(root, "job-9").resolve_restore_target("latest") is None


def test_list_snapshots_newest_first(root: Root) -> None:
    st = storage(root)
    complete_checkpoint(st, 1)
    complete_checkpoint(st, 2)
    st.writer(3, "count", 0).write("keyed-0", b"x")
    take_savepoint(st)
    st.job_store.put("chk-9/_metadata", b"garbage")
    rows = list_snapshots(f"{root.uri}/checkpoints", s3=root.settings)
    assert [(r.kind, r.id) for r in rows if r.problem is None] == [("checkpoint", 2), ("checkpoint", 1)]
    broken = [r for r in rows if r.problem is not None]
    assert len(broken) == 1 and broken[0].id == 9 and "corrupted" in (broken[0].problem or "")
    assert rows[-1].location == f"{st.checkpoint_base_uri}/chk-1" or broken[0] is rows[-1]
    sp_rows = list_snapshots(f"{root.uri}/savepoints", s3=root.settings)
    assert [(r.kind, r.id, r.job_id, r.size) for r in sp_rows] == [("savepoint", 7, "job-1", 24)]
    table = render_snapshot_table(rows).splitlines()
    assert table[0].split()[:3] == ["KIND", "ID", "JOB"]
    assert len(table) == 1 + len(rows) + 1 and table[-1].startswith("! ")
    assert any(line.split()[:2] == ["checkpoint", "2"] and line.endswith("/chk-2") for line in table)


def test_delete_job_root(root: Root) -> None:
    st = storage(root)
    st.write_lineage(None)
    complete_checkpoint(st, 1, {"a": b"A"})
    other = storage(root, "job-2")
    complete_checkpoint(other, 1)
    assert st.delete_job_root() == 4
    assert st.job_store.list("") == []
    assert st.latest_retained() is None
    assert other.latest_retained() is not None


def test_dispose_savepoint_refuses_anything_else(root: Root) -> None:
    st = storage(root)
    complete_checkpoint(st, 1)
    savepoint = take_savepoint(st)
    with pytest.raises(StorageError, match="not a savepoint"):
        dispose_savepoint(f"{st.checkpoint_base_uri}/chk-1", root.factory())
    with pytest.raises(MetadataError):
        dispose_savepoint(root.uri, root.factory())
    assert dispose_savepoint(savepoint, root.factory()) == 3
    assert root.factory().open(savepoint.rsplit("/", 1)[0]).list("") == []
    assert st.latest_retained() is not None


def test_restore_from_another_jobs_checkpoint_imports_its_shared_files(root: Root) -> None:
    old = storage(root, "job-1")
    complete_checkpoint(old, 1, {"count-kg0.keyed": b"K0", "count-kg1.keyed": b"K1"})
    new = storage(root, "job-2")
    loaded = new.load_metadata(new.resolve_restore_target(old.checkpoint_base_uri) or "")
    assert loaded.base_uri == old.checkpoint_base_uri
    assert new.import_shared(loaded) == 2
    assert new.import_shared(loaded) == 0
    assert new.import_shared(old.load_metadata(f"{old.checkpoint_base_uri}/chk-1")) == 0
    old.delete_job_root()
    reader = new.reader(new.checkpoint_base_uri)
    shared = [h for h in loaded.metadata.handles() if h.shared]
    assert [reader.read(h) for h in shared] == [b"K0", b"K1"]
    assert old.import_shared(new.load_metadata(savepoint_of(new))) == 0


def savepoint_of(st: CheckpointStorage) -> str:
    return take_savepoint(st)


def test_latest_lineage_picks_the_newest_restorable_job_id(root: Root) -> None:
    checkpoints = f"{root.uri}/checkpoints"
    assert latest_lineage(checkpoints, NS, NAME, root.settings) is None
    old = storage(root, "job-1")
    old.write_lineage(None)
    complete_checkpoint(old, 1)
    complete_checkpoint(old, 2)
    assert latest_lineage(checkpoints, NS, NAME, root.settings) == "job-1"
    savepoint = take_savepoint(old)
    storage(root, "job-2").write_lineage(savepoint)  # started later, from the savepoint
    storage(root, "job-3").write_lineage(None)  # a fresh start with nothing to restore yet
    assert latest_lineage(checkpoints, NS, NAME, root.settings) == "job-2"
    assert latest_lineage(checkpoints, NS, "other-job", root.settings) is None
