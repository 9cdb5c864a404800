"""Kafka connectors (confluent-kafka): the public import path of the source and the sink.

``KafkaSource`` (``kafka_source``): per-partition offsets in the checkpoint, batched reads,
partition discovery, ``starting_offsets`` earliest/latest/timestamp/committed, consumer-group
offsets committed on checkpoint completion for monitoring. ``KafkaSink`` (``kafka_sink``):
none / at-least-once / exactly-once (write-ahead log in the checkpoint, one Kafka transaction per
checkpoint produced off the task's loop). docs/exactly-once.md describes the design and its costs.
"""

from __future__ import annotations

from streamjob.worker.connectors.kafka_common import KafkaConnectorError
from streamjob.worker.connectors.kafka_sink import KafkaSink, Semantic
from streamjob.worker.connectors.kafka_source import KafkaRecord, KafkaSource, KafkaSourceReader, partition_owner

__all__ = [
    "KafkaConnectorError",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSource",
    "KafkaSourceReader",
    "Semantic",
    "partition_owner",
]
