"""Per-partition watermarks of the Kafka source against the real broker (``from_source(kafka, strategy, name)``).

One source subtask reads both partitions of a topic, in whatever order the consumer hands them out. p0's
event time runs far ahead of p1's; each partition is in order. With one watermark per partition the
source's watermark is the minimum over the partitions not finished, so no p1 record is ever behind it,
whatever the interleaving: every window is exact and nothing is late (with one watermark over the merged
stream, p1's records read after p0's would be late). Expected outputs derived by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from streamjob.worker.api import (
    OutputTag,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from streamjob.worker.connectors.kafka import KafkaSource
from streamjob.worker.testing import TestingSink, run_in_process
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

LATE = OutputTag("late")
P0 = [1000, 5000, 9000, 12_000]
P1 = [100, 600, 1200, 4100, 8500]


def _produce(broker: KafkaBroker, topic: str) -> None:
    """p0's records to partition 0, p1's to partition 1 (the producer is gone before the broker stops)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for partition, stamps in ((0, P0), (1, P1)):
        for ts in stamps:
            producer.produce(topic, f"p{partition},{ts}".encode(), partition=partition)
    assert producer.flush(30) == 0


class Counted(ProcessWindowFunction[Any, Any, Any]):
    def process(self, key: Any, context: Any, elements: Iterable[Any], out: Any) -> None:
        out.collect((key, context.window().start, len(list(elements))))


def test_a_fast_partition_leaves_no_record_of_a_slow_one_late(kafka_broker: KafkaBroker) -> None:
    topic = kafka_broker.create_topic("split-watermarks", partitions=2)
    _produce(kafka_broker, topic)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda s: int(s.split(",")[1]))
    windows: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    source = KafkaSource(topic, kafka_broker.bootstrap, "split-watermarks", bounded=True)
    counted = (
        env.from_source(source, strategy, "kafka")
        .uid("kafka")
        .set_parallelism(1)  # one reader, both partitions
        .key_by(lambda s: s.split(",")[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(LATE)
        .process(Counted())
        .uid("windows")
    )
    counted.add_sink(TestingSink(windows)).uid("out")
    counted.get_side_output(LATE).add_sink(TestingSink(late)).uid("late")
    run_in_process(env, parallelism=2)
    # p0: one record in each of [1000,2000), [5000,6000), [9000,10000), [12000,13000); p1: 100 and 600 in
    # [0,1000), then [1000,2000), [4000,5000), [8000,9000).
    assert sorted(windows) == [
        ("p0", 1000, 1),
        ("p0", 5000, 1),
        ("p0", 9000, 1),
        ("p0", 12_000, 1),
        ("p1", 0, 2),
        ("p1", 1000, 1),
        ("p1", 4000, 1),
        ("p1", 8000, 1),
    ]
    assert late == []
