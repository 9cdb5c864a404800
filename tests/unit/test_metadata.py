import json
from typing import Any

import pytest

from streamjob.worker.errors import MetadataError, StorageError
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import (
    FORMAT_VERSION,
    CheckpointMetadata,
    JobLineage,
    OperatorSnapshot,
    SubtaskSnapshot,
    decode_lineage,
    decode_metadata,
    encode_lineage,
    encode_metadata,
)

pytestmark = pytest.mark.unit

SOURCE = "s3://b/ckpt/ns/n/j1/chk-3/_metadata"


def sample(**overrides: Any) -> CheckpointMetadata:
    keyed = StateHandle(
        path="shared/op-kg0.keyed", size=10, sha256="ab" * 32, key_group_start=0, key_group_end=63, shared=True
    )
    private = StateHandle(path="chk-3/op/0/operator-0", size=4, sha256="cd" * 32)
    channel = StateHandle(path="chk-3/op/0/channel-0", size=2, sha256="ef" * 32)
    fields: dict[str, Any] = dict(
        kind="checkpoint",
        checkpoint_id=3,
        job_id="j1",
        job_name="n",
        namespace="ns",
        trigger_timestamp_ms=1_000,
        completion_timestamp_ms=1_250,
        duration_ms=250,
        total_size=16,
        max_parallelism=128,
        mode="EXACTLY_ONCE",
        unaligned=True,
        restored_from=None,
        operators={
            "op": OperatorSnapshot(
                uid="op",
                name="Count",
                parallelism=2,
                max_parallelism=128,
                subtasks=[
                    SubtaskSnapshot(subtask_index=0, keyed=[keyed], operator=[private], channel=[channel]),
                    SubtaskSnapshot(subtask_index=1),
                ],
            )
        },
        shared_files=["shared/op-kg0.keyed"],
        source_positions={"src": [["partition-0", 42], None]},
    )
    fields.update(overrides)
    return CheckpointMetadata(**fields)


def test_round_trip() -> None:
    meta = sample()
    data = encode_metadata(meta)
    assert json.loads(data)["format_version"] == FORMAT_VERSION
    assert decode_metadata(data, source=SOURCE) == meta
    assert encode_metadata(decode_metadata(data, source=SOURCE)) == data


def test_handles_and_shared_references() -> None:
    meta = sample(shared_files=[])
    assert len(list(meta.handles())) == 3
    assert meta.referenced_shared_files() == {"shared/op-kg0.keyed"}


@pytest.mark.parametrize("data", [b"", b"   ", b"{not json", b"\xff\xfe", b"[1, 2]", b"null"])
def test_corrupt_json_names_the_file(data: bytes) -> None:
    with pytest.raises(MetadataError) as info:
        decode_metadata(data, source=SOURCE)
    assert SOURCE in str(info.value)
    assert "restore" in str(info.value)


def test_truncated_file_is_corrupt() -> None:
    data = encode_metadata(sample())
    with pytest.raises(MetadataError, match="corrupted"):
        decode_metadata(data[: len(data) // 2], source=SOURCE)


def test_missing_field_is_named() -> None:
    document = json.loads(encode_metadata(sample()))
    del document["job_id"]
    del document["operators"]["op"]["subtasks"][0]["keyed"][0]["sha256"]
    with pytest.raises(MetadataError) as info:
        decode_metadata(json.dumps(document).encode(), source=SOURCE)
    message = str(info.value)
    assert SOURCE in message
    assert "'job_id' is missing" in message
    assert "operators.op.subtasks.0.keyed.0.sha256" in message


def test_metadata_error_is_a_storage_error() -> None:
    assert issubclass(MetadataError, StorageError)


@pytest.mark.parametrize(
    ("version", "needle"), [(2, "upgrade streamjob"), (0, "unsupported"), ("1", "not an integer"), (None, "missing")]
)
def test_unsupported_format_versions(version: object, needle: str) -> None:
    document = json.loads(encode_metadata(sample()))
    if version is None:
        del document["format_version"]
    else:
        document["format_version"] = version
    with pytest.raises(MetadataError, match=needle) as info:
        decode_metadata(json.dumps(document).encode(), source=SOURCE)
    assert SOURCE in str(info.value)


def test_bad_values_are_rejected() -> None:
    document = json.loads(encode_metadata(sample()))
    document["mode"] = "SOMETIMES"
    document["surprise"] = 1
    with pytest.raises(MetadataError, match="mode") as info:
        decode_metadata(json.dumps(document).encode(), source=SOURCE)
    assert "surprise" in str(info.value)


def test_never_unpickles() -> None:
    import pickle

    with pytest.raises(MetadataError):
        decode_metadata(pickle.dumps({"format_version": 1}), source=SOURCE)


def test_writing_another_version_is_refused() -> None:
    with pytest.raises(MetadataError, match="format_version"):
        encode_metadata(sample(format_version=FORMAT_VERSION + 1))


def test_lineage_round_trip_and_errors() -> None:
    lineage = JobLineage(
        job_id="j2", created_at="2026-01-01T00:00:00+00:00", restored_from="s3://b/sp/ns/n/savepoint-x/_metadata"
    )
    assert decode_lineage(encode_lineage(lineage), source="x") == lineage
    with pytest.raises(MetadataError, match="lineage file x"):
        decode_lineage(b"{", source="x")
    with pytest.raises(MetadataError, match="job_id"):
        decode_lineage(b'{"format_version": 1, "created_at": "t"}', source="x")
