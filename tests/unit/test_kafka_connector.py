"""Kafka connector parts that need no broker: partition assignment, handle encoding, validation."""

from __future__ import annotations

from collections import Counter

import pytest

from streamjob.worker.connectors.kafka import (
    KafkaSink,
    KafkaSource,
    _default_serializer,
    _pack,
    _unpack,
    partition_owner,
)
from streamjob.worker.errors import ConfigError

pytestmark = pytest.mark.unit


def test_partitions_of_a_topic_spread_evenly_and_stably() -> None:
    for parallelism in (1, 2, 3, 7):
        owners = Counter(partition_owner("orders", p, parallelism) for p in range(parallelism * 4))
        assert set(owners) == set(range(parallelism))
        assert set(owners.values()) == {4}
    assert partition_owner("orders", 5, 3) == partition_owner("orders", 5, 3)


def test_handle_records_survive_the_safe_serializer_encoding() -> None:
    for data in (None, b"", b"\x00\xff binary", b"text"):
        packed = _pack(data)
        assert packed is None or isinstance(packed, str)
        assert _unpack(packed) == data


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
    source = KafkaSource("t", "127.0.0.1:9092", "g", bounded=True, properties={"fetch.min.bytes": 1})
    config = source.consumer_config()
    assert config["isolation.level"] == "read_committed" and config["fetch.min.bytes"] == 1
    assert source.redistribution == "union" and source.bounded
