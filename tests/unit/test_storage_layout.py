import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.storage import layout
from streamjob.worker.storage.uri import parse_storage_uri

pytestmark = pytest.mark.unit


def test_paths_follow_the_design_layout() -> None:
    root = layout.job_root(parse_storage_uri("s3://b/ckpt"), "default", "wordcount", "j-1")
    assert str(root) == "s3://b/ckpt/default/wordcount/j-1"
    assert layout.checkpoint_metadata_key(7) == "chk-7/_metadata"
    assert layout.checkpoint_file_key(7, "count", 2, "keyed-0") == "chk-7/count/2/keyed-0"
    assert layout.shared_file_key("x.keyed") == "shared/x.keyed"
    sp_root = layout.savepoints_root(parse_storage_uri("file:///sp"), "default", "wordcount")
    assert str(sp_root) == "file:///sp/default/wordcount"


def test_segments_are_validated_and_uids_encoded() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        layout.job_root(parse_storage_uri("s3://b"), "a/b", "n", "j")
    with pytest.raises(ConfigError, match="jobId"):
        layout.job_root(parse_storage_uri("s3://b"), "ns", "n", "..")
    assert layout.encode_uid("my op/1") == "my%20op%2F1"
    assert layout.encode_uid("..") == "%2E."
    assert layout.encode_uid("plain-uid_1.x") == "plain-uid_1.x"


def test_checkpoint_dir_names() -> None:
    assert layout.parse_checkpoint_dir("chk-12") == 12
    assert layout.parse_checkpoint_dir("chk-12/") == 12
    for other in ["chk-", "chk-012", "chk-1a", "shared", "savepoint-x", "CHK-1"]:
        assert layout.parse_checkpoint_dir(other) is None
    assert layout.checkpoint_ids(["chk-10", "chk-2", "shared", "chk-x", "_lineage.json"]) == [2, 10]


def test_completed_checkpoint_ids_need_metadata() -> None:
    listing = [
        "chk-1/_metadata",
        "chk-1/op/0/a",
        "chk-2/op/0/a",
        "chk-3/_metadata",
        "chk-4/op/_metadata",
        "shared/x",
        "_lineage.json",
        "savepoint-1/_metadata",
    ]
    assert layout.completed_checkpoint_ids(listing) == [1, 3]


def test_choose_latest_skips_invalid_newest_first() -> None:
    tried: list[int] = []

    def valid(cid: int) -> bool:
        tried.append(cid)
        return cid in {1, 3}

    assert layout.choose_latest([1, 5, 3, 4], valid) == 3
    assert tried == [5, 4, 3]
    assert layout.choose_latest([], valid) is None
    assert layout.choose_latest([2, 4], valid) is None


def test_savepoint_names_and_bases() -> None:
    name = layout.new_savepoint_name("abcdef123456")
    assert name.startswith("savepoint-abcdef-") and len(name) == len("savepoint-abcdef-") + 12
    assert layout.new_savepoint_name("abcdef123456") != name
    assert layout.new_savepoint_name("j1", token="ff") == "savepoint-j1-ff"
    assert layout.is_savepoint_dir(name) and not layout.is_savepoint_dir("savepoint-")
    meta = parse_storage_uri("s3://b/c/ns/n/j/chk-4/_metadata")
    assert str(layout.snapshot_base(meta, "checkpoint")) == "s3://b/c/ns/n/j"
    sp = parse_storage_uri("s3://b/sp/ns/n/savepoint-x")
    assert str(layout.snapshot_base(sp, "savepoint")) == str(sp)
    assert str(layout.snapshot_dir_of(sp.join("_metadata"))) == str(sp)


def test_one_function_names_savepoint_directories_and_every_name_it_makes_is_recognized() -> None:
    assert layout.savepoint_dir_name("r1") == "savepoint-r1"
    for bad in ("", "a/b"):
        with pytest.raises(ValueError, match="one non-empty path segment"):
            layout.savepoint_dir_name(bad)
    for name in (layout.savepoint_dir_name("r1"), layout.new_savepoint_name("abcdef123456")):
        assert layout.is_savepoint_dir(name)
        for location in (f"s3://b/sp/ns/n/{name}", f"s3://b/sp/ns/n/{name}/", f"/data/sp/{name}/_metadata"):
            assert layout.is_savepoint_location(location), location


@pytest.mark.parametrize(
    "location",
    [
        None,
        "",
        "/",
        "s3://b/c/ns/n/j/chk-4/_metadata",
        "s3://b/c/ns/n/j/chk-4",
        "s3://b/savepoint-x/chk-4",
        "savepoint-",
    ],
)
def test_checkpoints_and_non_snapshots_are_not_savepoint_locations(location: str | None) -> None:
    assert not layout.is_savepoint_location(location)
