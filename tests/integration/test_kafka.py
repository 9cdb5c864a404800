"""Kafka source and sink against the real broker: replay after a kill, exactly-once output, errors."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.sources import SourceReaderContext
from streamjob.worker.connectors.kafka import KafkaConnectorError, KafkaSink, KafkaSource
from tests.integration.faultjobs.jobs import compare, read_file_outputs, read_kafka_outputs
from tests.integration.faultjobs.runner import HookedProgress, run_job
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def _produce(broker: KafkaBroker, topic: str, count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, str(i).encode(), partition=i % 3)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def _kill_worker_at(checkpoint: int) -> Any:
    def hook(progress: HookedProgress, kind: str, data: dict[str, Any]) -> None:
        if kind == "checkpoint" and data["id"] >= checkpoint and not getattr(progress, "killed", False):
            pids = progress.launcher.pids() if progress.launcher is not None else []
            if pids:
                progress.killed = True  # type: ignore[attr-defined]
                os.kill(pids[-1], signal.SIGKILL)

    return hook


def test_source_replays_from_checkpointed_offsets_after_a_kill(
    kafka_broker: KafkaBroker, kafka_topic: str, tmp_path: Path
) -> None:
    count = 20_000
    _produce(kafka_broker, kafka_topic, count)
    out = (tmp_path / "out").as_uri()
    code, progress = run_job(
        [
            "source=kafka",
            f"topic={kafka_topic}",
            f"bootstrap={kafka_broker.bootstrap}",
            "bounded=1",
            f"output={out}",
            "interval=100",
        ],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
        _kill_worker_at(1),
    )
    assert code == 0, progress.lines
    assert progress.count("restarting") == 1, progress.lines
    assert compare(read_file_outputs(out), count, exactly_once=True) is None


def test_sink_is_exactly_once_with_read_committed_after_a_kill(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    out_topic = kafka_broker.create_topic(f"out-{tmp_path.name[-20:]}", partitions=2)
    count = 4_000
    code, progress = run_job(
        [
            "source=gen",
            f"count={count}",
            "rate=1000",
            "sink=kafka",
            f"out_topic={out_topic}",
            f"bootstrap={kafka_broker.bootstrap}",
            "interval=200",
        ],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
        _kill_worker_at(1),
    )
    assert code == 0, progress.lines
    assert progress.count("restarting") == 1, progress.lines
    problem = compare(read_kafka_outputs(kafka_broker.bootstrap, out_topic), count, exactly_once=True)
    assert problem is None, problem


def test_at_least_once_sink_loses_nothing(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    out_topic = kafka_broker.create_topic(f"alo-{tmp_path.name[-20:]}", partitions=1)
    count = 3_000
    code, progress = run_job(
        [
            "source=gen",
            f"count={count}",
            "rate=1000",
            "sink=kafka",
            f"out_topic={out_topic}",
            "semantic=at-least-once",
            f"bootstrap={kafka_broker.bootstrap}",
            "interval=200",
        ],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
        _kill_worker_at(1),
    )
    assert code == 0, progress.lines
    assert compare(read_kafka_outputs(kafka_broker.bootstrap, out_topic), count, exactly_once=False) is None


def test_partition_discovery_and_resume_in_a_reader(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    _produce(kafka_broker, kafka_topic, 30)
    source = KafkaSource(kafka_topic, kafka_broker.bootstrap, "g", discovery_interval_ms=100)
    reader = source.create_reader(SourceReaderContext(0, 1, 0), None)
    got: list[Any] = []
    while len(got) < 10:
        got.extend(reader.poll(5) or [])
    state = reader.snapshot()
    reader.close()
    restored = source.create_reader(SourceReaderContext(0, 1, 1), state)
    kafka_broker.add_partitions(kafka_topic, 4)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    producer.produce(kafka_topic, b"new", partition=3)
    producer.flush(10)
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sorted(got) != sorted([*map(str, range(30)), "new"]):
        got.extend(restored.poll(50) or [])
    restored.close()
    assert sorted(got) == sorted([*map(str, range(30)), "new"])


def test_default_deserializer_keeps_every_value_in_order_with_tombstones_and_partition_events(
    kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    """The batch decode's fast path and both fallbacks (a None value, an end-of-partition event)."""
    from confluent_kafka import Producer

    values: list[bytes | None] = [str(i).encode() for i in range(5000)]
    values[1234] = None  # a tombstone in the middle of a batch
    values[4321] = "é-ünïcode".encode()
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 5})
    for value in values:
        producer.produce(kafka_topic, value, partition=0)  # one partition: one order
    assert producer.flush(30) == 0
    reader = KafkaSource(kafka_topic, kafka_broker.bootstrap, "g-decode", bounded=True).create_reader(
        SourceReaderContext(0, 1, 0), None
    )
    got: list[Any] = []
    while (batch := reader.poll(700)) is not None:
        got.extend(batch)
    reader.close()
    assert got == [None if v is None else v.decode() for v in values]


def test_clear_errors_for_unreachable_broker_and_missing_topic(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    ctx = SourceReaderContext(0, 1, 0)
    with pytest.raises(KafkaConnectorError, match="cannot reach the Kafka brokers"):
        KafkaSource("x", "127.0.0.1:1", "g", metadata_timeout_ms=1500).create_reader(ctx, None)
    with pytest.raises(KafkaConnectorError, match="does not exist"):
        KafkaSource("no-such-topic", kafka_broker.bootstrap, "g").create_reader(ctx, None)
    sink = KafkaSink("no-such-topic", kafka_broker.bootstrap, "at-least-once", timeout_ms=5000)
    sink.open(
        type("R", (), {"get_index_of_this_subtask": lambda s: 0, "get_number_of_parallel_subtasks": lambda s: 1})()
    )
    with pytest.raises(KafkaConnectorError, match="does not exist"):
        sink.begin_transaction()
    # in a job: a clear job error, not a hang or silent loss
    code, progress = run_job(
        [
            "source=kafka",
            "topic=no-such-topic",
            f"bootstrap={kafka_broker.bootstrap}",
            f"output={(tmp_path / 'o').as_uri()}",
            "restart=none",
        ],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
    )
    assert code != 0
    assert any("does not exist" in line for line in progress.lines), progress.lines


class _State:
    def __init__(self, values: list[Any]) -> None:
        self.values = list(values)

    def get(self) -> list[Any]:
        return list(self.values)

    def update(self, values: list[Any]) -> None:
        self.values = list(values)

    def clear(self) -> None:
        self.values = []


class _Ctx:
    """Function initialization and runtime contexts of one subtask (as the 2PC operator passes them)."""

    def __init__(self, index: int, parallelism: int, restored: list[Any] | None) -> None:
        self.index, self.parallelism = index, parallelism
        self.state = _State(restored or [])
        self.restored = restored is not None

    def is_restored(self) -> bool:
        return self.restored

    def get_operator_state_store(self) -> _Ctx:
        return self

    def get_list_state(self, descriptor: Any) -> _State:
        return self.state

    def get_union_list_state(self, descriptor: Any) -> _State:
        return _State([])

    def get_index_of_this_subtask(self) -> int:
        return self.index

    def get_number_of_parallel_subtasks(self) -> int:
        return self.parallelism


def _sink(broker: KafkaBroker, topic: str, index: int, parallelism: int, restored: list[Any] | None) -> Any:
    sink = KafkaSink(topic, broker.bootstrap, transactional_id_prefix=f"p-{topic}", timeout_ms=20_000)
    ctx = _Ctx(index, parallelism, restored)
    sink.initialize_state(ctx)
    sink.open(ctx)
    return sink, ctx


def test_sink_recovery_commits_each_handle_once_and_takes_over_removed_writers(kafka_broker: KafkaBroker) -> None:
    topic = kafka_broker.create_topic(f"rec-{os.getpid()}-{id(object())}", partitions=1)
    from streamjob.worker.state.serializers import SafeSerializer

    union: list[Any] = []
    writers = []
    for index in range(2):
        sink, ctx = _sink(kafka_broker, topic, index, 2, None)
        txn = sink.begin_transaction()
        sink.invoke_batch(txn, [["w", index, n] for n in range(5)])
        sink.snapshot_state(None)
        sink.pre_commit(txn)
        union.extend(SafeSerializer().decode(SafeSerializer().encode(ctx.state.get())))
        writers.append((sink, txn))
    writers[0][0].commit(writers[0][1])  # writer 0 committed before the crash, writer 1 did not
    writers[0][0].close()  # waits for the committer thread
    # restore at parallelism 1 (twice: a crash before the next checkpoint repeats the recovery)
    for _ in range(2):
        sink, _ctx = _sink(kafka_broker, topic, 0, 1, union)
        sink.begin_transaction()
    rows = read_kafka_outputs(kafka_broker.bootstrap, topic)
    assert sorted(map(tuple, rows)) == sorted(("w", i, n) for i in range(2) for n in range(5))


def test_starting_offsets_timestamp_latest_and_committed_group(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
    import time

    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    base = 1_700_000_000_000
    for i in range(30):  # record i has timestamp base + i * 1000 ms
        producer.produce(kafka_topic, str(i).encode(), partition=i % 3, timestamp=base + i * 1000)
    assert producer.flush(10) == 0

    def read_all(source: KafkaSource, expected: int) -> list[Any]:
        reader = source.create_reader(SourceReaderContext(0, 1, 0), None)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(got) < expected:
            got.extend(reader.poll(100) or [])
        extra = reader.poll(100) or []  # nothing beyond what is expected
        reader.close()
        return sorted(got + extra, key=int)

    at = KafkaSource(
        kafka_topic, kafka_broker.bootstrap, "g-ts", starting_offsets="timestamp", starting_timestamp_ms=base + 20_000
    )
    assert read_all(at, 10) == [str(i) for i in range(20, 30)]
    future = KafkaSource(
        kafka_topic, kafka_broker.bootstrap, "g-ts", starting_offsets="timestamp", starting_timestamp_ms=base * 2
    )
    assert read_all(future, 0) == []
    assert read_all(KafkaSource(kafka_topic, kafka_broker.bootstrap, "g-l", starting_offsets="latest"), 0) == []
    # committed: where the group left off; a partition it never committed starts at the earliest offset
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g-c", "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(kafka_topic, 0, 8), TopicPartition(kafka_topic, 1, 10)], asynchronous=False)
    consumer.close()
    committed = KafkaSource(kafka_topic, kafka_broker.bootstrap, "g-c", starting_offsets="committed")
    # partition 0 holds 0,3,..,27 (offset 8 -> 24, 27); partition 1 is done; partition 2: all 10
    assert read_all(committed, 12) == sorted(["24", "27", *(str(i) for i in range(2, 30, 3))], key=int)


def _read_pairs(broker: KafkaBroker, topic: str, expected: int) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every committed record of a one-partition topic, in order."""
    import time
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"pairs-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < expected:
        for msg in consumer.consume(1000, 0.2):
            if msg.error() is None:
                got.append((msg.key(), msg.value()))
    got.extend((m.key(), m.value()) for m in consumer.consume(1000, 0.5) if m.error() is None)  # nothing more
    consumer.close()
    return got


def test_exactly_once_sink_commits_keys_and_tombstones_exactly_live_and_from_a_restored_log(
    kafka_broker: KafkaBroker,
) -> None:
    """Both produce paths of the committer: plain values (C-level slicing) and keys/None (the decoder)."""
    from streamjob.worker.state.serializers import SafeSerializer

    topic = kafka_broker.create_topic(f"keys-{os.getpid()}-{id(object())}", partitions=1)

    def keyed_sink(restored: list[Any] | None) -> tuple[Any, _Ctx]:
        sink = KafkaSink(
            topic,
            kafka_broker.bootstrap,
            transactional_id_prefix=f"k-{topic}",
            serializer=lambda v: None if v[1] is None else str(v[1]).encode(),
            key_serializer=lambda v: None if v[0] is None else str(v[0]).encode(),
            timeout_ms=20_000,
        )
        ctx = _Ctx(0, 1, restored)
        sink.initialize_state(ctx)
        sink.open(ctx)
        return sink, ctx

    rows = [("a", 1), (None, 2), ("c", None), ("", 4)]
    sink, ctx = keyed_sink(None)
    txn = sink.begin_transaction()
    sink.invoke_batch(txn, rows)
    sink.snapshot_state(None)
    sink.pre_commit(txn)
    sink.commit(txn)  # live: the committer thread produces it
    txn = sink.begin_transaction()
    sink.invoke_batch(txn, [("k", 5), ("k", None)])
    sink.snapshot_state(None)
    sink.pre_commit(txn)  # the checkpoint completes, then the process dies before the Kafka commit
    state = SafeSerializer().decode(SafeSerializer().encode(ctx.state.get()))
    sink.close()  # drains the first commit only (the second was never handed to the committer)
    restored, _ = keyed_sink(state)
    restored.begin_transaction()  # recovery commits the second interval from its blob
    expected = [(b"a", b"1"), (None, b"2"), (b"c", None), (b"", b"4"), (b"k", b"5"), (b"k", None)]
    assert _read_pairs(kafka_broker, topic, len(expected)) == expected
