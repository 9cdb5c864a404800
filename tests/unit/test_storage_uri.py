import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.uri import StorageUri, parse_storage_uri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket/a/b", StorageUri("s3", "bucket", "a/b")),
        ("s3://bucket/a/b/", StorageUri("s3", "bucket", "a/b")),
        ("s3://bucket", StorageUri("s3", "bucket", "")),
        ("s3://bucket/", StorageUri("s3", "bucket", "")),
        ("file:///tmp/x", StorageUri("file", "", "/tmp/x")),
        ("file:///tmp/x/", StorageUri("file", "", "/tmp/x")),
        ("file://localhost/tmp/x", StorageUri("file", "", "/tmp/x")),
        ("file:///", StorageUri("file", "", "/")),
        ("/var/chk", StorageUri("file", "", "/var/chk")),
        ("  s3://b1/p  ", StorageUri("s3", "b1", "p")),
    ],
)
def test_parses_accepted_forms(text: str, expected: StorageUri) -> None:
    assert parse_storage_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "relative/path",
        "http://host/x",
        "s3:///nobucket",
        "file://host/tmp",
        "s3://b/a//c",
        "s3://b/a/../c",
        "/a/./b",
        "s3://bucket/p?x=1",
        "s3://b!d/p",
        "gs://bucket/x",
    ],
)
def test_rejects_bad_uris_naming_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_storage_uri(text)
    message = str(info.value)
    assert repr(text) in message
    assert "file:///abs/path" in message and "s3://bucket/prefix" in message


def test_str_round_trips() -> None:
    for text in ["s3://bucket/a/b", "s3://bucket", "file:///tmp/x", "file:///"]:
        assert str(parse_storage_uri(text)) == text
        assert parse_storage_uri(str(parse_storage_uri(text))) == parse_storage_uri(text)


def test_join_parent_name_and_relative_to() -> None:
    root = parse_storage_uri("s3://bucket")
    chk = root.join("ns", "job/j1", "chk-3")
    assert str(chk) == "s3://bucket/ns/job/j1/chk-3"
    assert chk.name == "chk-3"
    assert str(chk.parent) == "s3://bucket/ns/job/j1"
    assert chk.relative_to(root) == "ns/job/j1/chk-3"
    assert chk.relative_to(parse_storage_uri("s3://other")) is None
    assert str(parse_storage_uri("file:///").join("a", "b")) == "file:///a/b"
    assert parse_storage_uri("file:///a/b").join() == parse_storage_uri("file:///a/b")
    assert str(parse_storage_uri("file:///a").parent) == "file:///"
    with pytest.raises(ConfigError):
        root.join("..")


def test_s3_settings_from_env() -> None:
    settings = S3Settings.from_env(
        {
            "STREAMJOB_S3_ENDPOINT": "http://127.0.0.1:9000",
            "STREAMJOB_S3_PATH_STYLE": "true",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
        }
    )
    assert settings == S3Settings("http://127.0.0.1:9000", "eu-west-1", True, "id", "secret", None)
    assert "secret" not in repr(settings)
    assert S3Settings.from_env({}) == S3Settings(None, "us-east-1", False, None, None, None)
    assert S3Settings.from_env({"STREAMJOB_S3_REGION": "a", "AWS_REGION": "b"}).region == "a"
    assert S3Settings.from_env({"AWS_REGION": "b", "AWS_DEFAULT_REGION": "c"}).region == "b"
    with pytest.raises(ConfigError, match="STREAMJOB_S3_PATH_STYLE"):
        S3Settings.from_env({"STREAMJOB_S3_PATH_STYLE": "maybe"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("filesystem://s3://bucket/flink/checkpoints", StorageUri("s3", "bucket", "flink/checkpoints")),
        ("filesystem://file:///tmp/checkpoints", StorageUri("file", "", "/tmp/checkpoints")),
    ],
)
def test_flinks_filesystem_prefix_names_the_uri_after_it(text: str, expected: StorageUri) -> None:
    assert parse_storage_uri(text) == expected


@pytest.mark.parametrize(
    "text", ["hdfs://namenode:8020/flink/checkpoints", "filesystem://hdfs://namenode:8020/flink/checkpoints"]
)
def test_hdfs_is_refused_in_one_line_naming_the_substitutes(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_storage_uri(text)
    message = str(caught.value)
    assert "\n" not in message and "HDFS is not a checkpoint store" in message
    assert "s3://bucket/prefix" in message and "file://" in message
