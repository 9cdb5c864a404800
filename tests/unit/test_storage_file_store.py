"""FileObjectStore details that need no server: atomic writes, pruning, reserved names."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.file_store import FileObjectStore
from streamjob.worker.storage.stores import open_store
from streamjob.worker.storage.uri import parse_storage_uri

pytestmark = pytest.mark.unit


def test_writes_leave_no_temporary_files_and_deletes_prune_dirs(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/root")
    assert isinstance(store, FileObjectStore)
    store.put("a/b/c", b"1")
    store.put("a/b/c", b"2", if_absent=True)
    assert [p.name for p in (tmp_path / "root/a/b").iterdir()] == ["c"]
    store.delete("a/b/c")
    assert list((tmp_path / "root").iterdir()) == []
    assert store.list_dirs("") == []


def test_uploads_are_hidden_from_listings(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    upload = store.begin_upload("x/y")
    store.upload_part("x/y", upload, 1, b"p")
    assert store.list("") == [] and store.list_dirs("") == []
    with pytest.raises(StorageError):
        store.upload_part("x/other", upload, 1, b"p")
    with pytest.raises(StorageError):
        store.upload_part("x/y", upload, 0, b"p")
    with pytest.raises(StorageError, match="unknown upload"):
        store.upload_part("x/y", "../../etc", 1, b"p")


def test_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a directory")
    store = FileObjectStore(parse_storage_uri(f"file://{tmp_path}/file"))
    with pytest.raises(StorageError, match="cannot write"):
        store.put("k", b"1")


def test_file_store_needs_a_file_root() -> None:
    with pytest.raises(StorageError):
        FileObjectStore(parse_storage_uri("s3://bucket/x"))


def test_flush_syncs_the_files_written_without_fsync_and_tolerates_deleted_ones(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/root")
    store.put("chk-1/op/0/state", b"kept", durable=False)
    store.put("chk-1/op/1/state", b"gone", durable=False)
    store.delete("chk-1/op/1/state")  # an aborted snapshot's file, removed before the flush
    store.flush()
    store.flush()  # nothing pending: returns at once
    assert store.get("chk-1/op/0/state") == b"kept"
    assert [info.key for info in store.list("chk-1/")] == ["chk-1/op/0/state"]


def test_flush_syncs_only_directories_that_got_a_new_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "job").mkdir(parents=True)
    store = FileObjectStore(parse_storage_uri(f"file://{root}"))
    store.put("job/chk-2/op/0/state", b"a", durable=False)
    # chk-2 and its subdirectories are new: each parent up to the job's directory got an entry.
    assert store._unsynced_dirs == {root / "job", root / "job/chk-2", root / "job/chk-2/op", root / "job/chk-2/op/0"}
    store.flush()
    store.put("job/chk-2/op/1/state", b"b", durable=False)
    assert store._unsynced_dirs == {root / "job/chk-2/op", root / "job/chk-2/op/1"}  # the job's root did not change
    store.flush()
    assert store._unsynced_dirs == set() and store.get("job/chk-2/op/1/state") == b"b"
