"""Kafka connector parts that need no broker: partition assignment, the write-ahead log blob, validation."""

from __future__ import annotations

from collections import Counter

import pytest

from streamjob.worker.connectors import kafka_wal
from streamjob.worker.connectors.kafka import KafkaConnectorError, KafkaSink, KafkaSource, partition_owner
from streamjob.worker.connectors.kafka_sink import _default_serializer
from streamjob.worker.errors import ConfigError
from streamjob.worker.state.serializers import SafeSerializer

pytestmark = pytest.mark.unit


def test_partitions_of_a_topic_spread_evenly_and_stably() -> None:
    for parallelism in (1, 2, 3, 7):
        owners = Counter(partition_owner("orders", p, parallelism) for p in range(parallelism * 4))
        assert set(owners) == set(range(parallelism))
        assert set(owners.values()) == {4}
    assert partition_owner("orders", 5, 3) == partition_owner("orders", 5, 3)


def test_wal_blob_round_trips_raw_bytes_with_a_small_constant_overhead() -> None:
    values: list[bytes | None] = [b"", b"\x00\xff binary", b"text", None, b"x" * 1000]
    keys: list[bytes | None] = [b"k", None, b"", b"key", None]
    blob = kafka_wal.encode(values, keys)
    assert list(kafka_wal.decode(blob)) == list(zip(keys, values, strict=True))
    assert kafka_wal.count(blob) == 5
    assert len(blob) == 10 + 8 * 5 + sum(len(v or b"") + len(k or b"") for k, v in zip(keys, values, strict=True))
    no_keys = kafka_wal.encode(values, None)
    assert list(kafka_wal.decode(no_keys)) == [(None, v) for v in values]
    assert len(no_keys) == 10 + 4 * 5 + sum(len(v or b"") for v in values)
    plain = [b"a", b"", b"bc", b"\x00" * 300]  # no None: joined in one call, sliced by C iterators
    plain_blob = kafka_wal.encode(plain, None)
    assert list(kafka_wal.decode(plain_blob)) == [(None, v) for v in plain]
    assert list(kafka_wal.plain_values(plain_blob) or []) == plain
    assert list(kafka_wal.plain_values(kafka_wal.encode([], None)) or [b"not empty"]) == []
    # keys or a tombstone: the general decoder's business
    assert kafka_wal.plain_values(blob) is None
    assert kafka_wal.plain_values(no_keys) is None
    # stored through the operator state's serializer as raw bytes (msgpack bin), not base64
    state = {"wid": "w", "token": "t", "committed": -1, "handles": [{"seq": 1, "records": no_keys}]}
    encoded = SafeSerializer().encode([state])
    assert len(encoded) < len(no_keys) + 80
    assert SafeSerializer().decode(encoded) == [state]


def test_a_corrupt_wal_blob_is_a_clear_error() -> None:
    with pytest.raises(KafkaConnectorError, match="truncated"):
        list(kafka_wal.decode(b"SJ"))
    with pytest.raises(KafkaConnectorError, match="unknown format"):
        list(kafka_wal.decode(b"XXXX" + bytes(6)))
    with pytest.raises(KafkaConnectorError, match="truncated"):
        kafka_wal.plain_values(b"SJ")


def test_default_serializer() -> None:
    assert _default_serializer(b"x") == b"x"
    assert _default_serializer("é") == "é".encode()
    assert _default_serializer(("u", 1)) == b'["u",1]'


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        KafkaSink("t", "127.0.0.1:9092", "twice")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        KafkaSource([], "127.0.0.1:9092", "g")
    with pytest.raises(ConfigError):
        KafkaSource("t", "127.0.0.1:9092", "g", starting_offsets="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="starting_timestamp_ms"):
        KafkaSource("t", "127.0.0.1:9092", "g", starting_offsets="timestamp")
    with pytest.raises(ConfigError, match="max_pending_commits"):
        KafkaSink("t", "127.0.0.1:9092", max_pending_commits=0)
    source = KafkaSource("t", "127.0.0.1:9092", "g", bounded=True, properties={"fetch.min.bytes": 1})
    config = source.consumer_config()
    assert config["isolation.level"] == "read_committed" and config["fetch.min.bytes"] == 1
    assert source.redistribution == "union" and source.bounded
