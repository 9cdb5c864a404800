from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.object_store import ObjectNotFoundError
from streamjob.worker.storage.uri import parse_storage_uri
from tests.integration.test_storage_support import Root, make_root
from tests.support.s3server import S3Endpoint

pytestmark = pytest.mark.integration


@pytest.fixture(params=["file", "s3", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Root:
    """Every store keeps the same contract; ``memory`` is the test kit's ``MemoryObjectStore``."""
    made = make_root(request.param, request, tmp_path)
    if request.param == "memory":
        request.addfinalizer(lambda: _nothing_on_disk(tmp_path))
    return made


def _nothing_on_disk(tmp_path: Path) -> None:
    assert not (tmp_path / "in-memory").exists(), "the in-memory store wrote to the path its URI names"


def test_put_get_exists_delete(root: Root) -> None:
    store = root.store()
    assert store.put("a/b/c.bin", b"hello")
    assert store.get("a/b/c.bin") == b"hello"
    assert store.exists("a/b/c.bin")
    assert not store.exists("a/b/missing")
    assert not store.exists("a/b")
    assert store.put("a/b/c.bin", b"replaced")
    assert store.get("a/b/c.bin") == b"replaced"
    with pytest.raises(ObjectNotFoundError) as info:
        store.get("a/b/missing")
    assert "a/b/missing" in str(info.value)
    store.delete("a/b/c.bin")
    store.delete("a/b/c.bin")
    assert not store.exists("a/b/c.bin")
    assert store.list("") == []
    assert store.uri("a/b") == f"{root.uri}/a/b"


def test_if_absent_writes_once(root: Root) -> None:
    store = root.store()
    assert store.put("x/_metadata", b"first", if_absent=True)
    assert not store.put("x/_metadata", b"second", if_absent=True)
    assert store.get("x/_metadata") == b"first"


def test_if_absent_races_have_one_winner(root: Root) -> None:
    store = root.store()
    wins: list[int] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        if store.put("race/_metadata", str(i).encode(), if_absent=True):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("race/_metadata") == str(wins[0]).encode()


def test_listing_is_recursive_and_dirs_one_level(root: Root) -> None:
    store = root.store()
    for key in ["chk-1/_metadata", "chk-1/op/0/a", "chk-10/op/1/b", "shared/s1", "_lineage.json"]:
        store.put(key, key.encode())
    infos = store.list("")
    assert [i.key for i in infos] == sorted(
        ["chk-1/_metadata", "chk-1/op/0/a", "chk-10/op/1/b", "shared/s1", "_lineage.json"]
    )
    assert {i.key: i.size for i in infos}["chk-1/op/0/a"] == len(b"chk-1/op/0/a")
    assert all(i.last_modified.tzinfo is not None for i in infos)
    assert [i.key for i in store.list("chk-1/")] == ["chk-1/_metadata", "chk-1/op/0/a"]
    assert [i.key for i in store.list("chk-1")] == ["chk-1/_metadata", "chk-1/op/0/a", "chk-10/op/1/b"]
    assert store.list_dirs("") == ["chk-1", "chk-10", "shared"]
    assert store.list_dirs("chk-1") == ["op"]
    assert store.list_dirs("chk-1/op/") == ["0"]
    assert store.list_dirs("nothing") == []
    assert store.delete_prefix("chk-1/") == 2
    assert not [i for i in store.list("") if i.key.startswith("chk-1/")]
    assert store.list_dirs("") == ["chk-10", "shared"]
    store.delete_many(["shared/s1", "_lineage.json", "not-there"])
    assert [i.key for i in store.list("")] == ["chk-10/op/1/b"]


def test_stores_at_nested_roots_see_relative_keys(root: Root) -> None:
    outer = root.store()
    outer.put("ns/name/job/chk-1/x", b"1")
    inner = root.store("ns", "name")
    assert [i.key for i in inner.list("")] == ["job/chk-1/x"]
    assert inner.get("job/chk-1/x") == b"1"
    assert inner.at(outer.root).get("ns/name/job/chk-1/x") == b"1"


def test_bad_keys_are_refused(root: Root) -> None:
    store = root.store()
    for key in ["", "/abs", "a/../b", "a//b", ".streamjob-uploads/x"]:
        with pytest.raises(StorageError):
            store.put(key, b"x")


def test_multipart_upload(root: Root) -> None:
    store = root.store()
    part1 = b"a" * (5 * 1024 * 1024)
    part2 = b"tail"
    upload = store.begin_upload("out/part-0.txt")
    pending = store.list_pending_uploads("out/")
    assert [(p.key, p.upload_id) for p in pending] == [("out/part-0.txt", upload)]
    assert store.list_pending_uploads("elsewhere/") == []
    second = store.upload_part("out/part-0.txt", upload, 2, part2)
    first = store.upload_part("out/part-0.txt", upload, 1, part1)
    assert not store.exists("out/part-0.txt")
    assert [i.key for i in store.list("")] == []
    store.complete_upload("out/part-0.txt", upload, [second, first])
    assert store.get("out/part-0.txt") == part1 + part2
    assert store.list_pending_uploads("") == []


def test_completing_an_unknown_upload_fails(root: Root) -> None:
    store = root.store()
    with pytest.raises(StorageError):
        store.complete_upload("out/x", "0123abcd", [])


def test_multipart_abort(root: Root) -> None:
    store = root.store()
    upload = store.begin_upload("out/part-1.txt")
    store.upload_part("out/part-1.txt", upload, 1, b"data")
    store.abort_upload("out/part-1.txt", upload)
    store.abort_upload("out/part-1.txt", upload)
    assert store.list_pending_uploads("") == []
    assert not store.exists("out/part-1.txt")


def test_concurrent_writers_from_threads(root: Root) -> None:
    store = root.store()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                store.put(f"t{i}/f{j}", bytes([i, j]))
                assert store.get(f"t{i}/f{j}") == bytes([i, j])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list("")) == 80


def test_s3_folder_markers_are_not_objects(s3: S3Endpoint, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = make_root("s3", request, tmp_path)
    store = root.store()
    prefix = parse_storage_uri(root.uri).path
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/folder/", Body=b"")
    store.put("folder/real", b"1")
    assert [i.key for i in store.list("")] == ["folder/real"]
    assert store.list_dirs("") == ["folder"]


def test_s3_warm_up_creates_the_client_before_the_first_write(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from streamjob.worker.storage.s3_store import S3ObjectStore

    store = make_root("s3", request, tmp_path).store()
    assert isinstance(store, S3ObjectStore)
    assert store._holder._client is None  # created lazily ...
    store.warm_up()
    client = store._holder._client
    assert client is not None  # ... or ahead of time
    store.put("a", b"1")
    assert store._holder._client is client and store.get("a") == b"1"
    assert [i.key for i in store.list("")] == ["a"]  # the warm-up wrote nothing


def test_s3_warm_up_of_an_unreachable_server_leaves_the_error_to_the_first_request(tmp_path: Path) -> None:
    from streamjob.worker.storage.s3_settings import S3Settings
    from streamjob.worker.storage.stores import StoreFactory

    settings = S3Settings(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", path_style=True, access_key_id="k", secret_access_key="s"
    )
    store = StoreFactory(settings).open(parse_storage_uri("s3://nowhere/prefix"))
    store.warm_up()  # best effort: no exception
    with pytest.raises(StorageError):
        store.put("a", b"1")


def test_get_with_max_bytes_refuses_a_larger_object_and_reads_the_rest(root: Root) -> None:
    """What keeps a poisoned ``_metadata`` from exhausting memory: the limit is checked before the body is read."""
    from streamjob.worker.errors import MetadataError
    from streamjob.worker.snapshot.metadata import decode_metadata
    from streamjob.worker.storage.object_store import ObjectTooLargeError
    from streamjob.worker.storage.snapshots import read_metadata

    store = root.store()
    store.put("big", b"x" * 100)
    store.put("exact", b"y" * 50)
    with pytest.raises(ObjectTooLargeError, match="100 bytes, more than the 50"):
        store.get("big", max_bytes=50)
    assert store.get("exact", max_bytes=50) == b"y" * 50
    assert store.get("big", max_bytes=100) == b"x" * 100
    with pytest.raises(ObjectNotFoundError):
        store.get("missing", max_bytes=50)
    store.put("chk-1/_metadata", b"[" * 5000 + b"]" * 5000)
    with pytest.raises(MetadataError, match="nests deeper than"):
        read_metadata(store, "chk-1/_metadata")
    with pytest.raises(MetadataError):
        decode_metadata(store.get("big"), source="big")
