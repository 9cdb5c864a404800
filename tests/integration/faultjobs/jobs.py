"""The pipeline of the exactly-once tests: source -> key_by -> keyed reduce -> exactly-once sink.

``build(args)`` reads ``key=value`` arguments (``streamjob run jobs.py:build -- source=gen ...``):

- ``source``: ``gen`` (a throttled generator of ``count`` payments), ``file`` (lines ``i`` of the
  files under ``input``, monitored when ``monitor_ms`` is set) or ``kafka`` (lines ``i`` of ``topic``
  at ``bootstrap``, bounded to the end offsets at start when ``bounded=1``, consumer group ``group``,
  partition discovery every ``discovery_ms``);
- ``sink``: ``file`` (FileSink into ``output``; ``slow_commit_ms`` delays every commit, widening the
  window between checkpoint completion and commit) or ``kafka`` (KafkaSink into ``out_topic``
  with ``semantic``, ``kafka_timeout_ms``, ``txn_timeout_ms`` for its transaction timeout);
- ``parallelism``, ``interval`` (checkpoint interval ms), ``mode`` (EXACTLY_ONCE/AT_LEAST_ONCE),
  ``restart`` (``none`` or the number of fixed-delay restarts), ``tolerable`` failed checkpoints.

Payment ``i`` is ``(user i % users, 1, amount)``; the reduce keeps each user's running count and
balance, so the exact expected output is known (``expected_outputs``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.environment import RestartStrategies
from streamjob.worker.api.file_sink import FileSink

USERS = 20


def payment(i: int) -> tuple[str, int, int, int]:
    """Payment ``i``: (user, count 1, amount, i), deterministic."""
    return (f"u{i % USERS}", 1, (i * 7919) % 1000, i)


def add(a: tuple[str, int, int, int], b: tuple[str, int, int, int]) -> tuple[str, int, int, int]:
    """Running count and balance of a user, and the id of the payment that changed them."""
    return (a[0], a[1] + b[1], a[2] + b[2], b[3])


def expected_outputs(count: int) -> dict[str, list[tuple[int, int]]]:
    """Every user's outputs ``(count, balance)`` in order, for payments ``0..count-1``."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    state: dict[str, tuple[int, int]] = {}
    for i in range(count):
        user, _, amount, _ = payment(i)
        n, balance = state.get(user, (0, 0))
        state[user] = (n + 1, balance + amount)
        out[user].append(state[user])
    return out


def compare(outputs: list[Any], count: int, exactly_once: bool) -> str | None:
    """None when ``outputs`` (committed ``[user, count, balance, id]`` rows) are right, else the problem.

    EXACTLY_ONCE: every user's running counts are ``1..n``, each exactly once, and the balance at
    count ``n`` is the exact total (intermediate balances depend on the order of partitions and are
    not compared). AT_LEAST_ONCE: the state itself may count a replayed record twice, so only the
    payment ids are checked: every id ``0..count-1`` reached the committed output.
    """
    if not exactly_once:
        ids = {int(row[3]) for row in outputs}
        missing = count - len(ids & set(range(count)))
        return f"{missing} of {count} payments missing from the output" if missing else None
    expected = expected_outputs(count)
    counts: dict[str, list[int]] = defaultdict(list)
    finals: dict[str, set[int]] = defaultdict(set)
    for user, n, balance, *_ in outputs:
        counts[user].append(n)
        if user in expected and n == len(expected[user]):
            finals[user].add(balance)
    for user, rows in expected.items():
        got = sorted(counts.get(user, []))
        want = list(range(1, len(rows) + 1))
        if got != want:
            missing = len(set(want) - set(got))
            return f"{user}: {missing} outputs missing, {len(got) - len(set(got))} duplicated"
        if finals.get(user) != {rows[-1][1]}:
            return f"{user}: final balance {finals.get(user)} != {rows[-1][1]}"
    unknown = set(counts) - set(expected)
    return f"unexpected users {sorted(unknown)}" if unknown else None


class SlowCommitFileSink(FileSink):
    """A FileSink whose commits take ``delay_ms`` longer (fault injection between completion and commit)."""

    def __init__(self, uri: str, delay_ms: int) -> None:
        super().__init__(uri)
        self.delay_ms = delay_ms

    def commit(self, transaction: dict[str, Any]) -> None:
        time.sleep(self.delay_ms / 1000)
        super().commit(transaction)


class FailingFileSink(FileSink):
    """A FileSink whose ``commit`` (or ``pre_commit``) always fails, as with a broken store."""

    def __init__(self, uri: str, phase: str) -> None:
        super().__init__(uri)
        self.phase = phase

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        if self.phase == "pre_commit":
            from streamjob.worker.errors import StorageError

            raise StorageError("injected pre-commit failure")
        super().pre_commit(transaction)

    def commit(self, transaction: dict[str, Any]) -> None:
        if self.phase == "commit" and transaction["files"]:
            from streamjob.worker.errors import StorageError

            raise StorageError("injected commit failure")
        super().commit(transaction)


def _options(args: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        opts[key] = value
    return opts


def build(args: list[str]) -> StreamExecutionEnvironment:
    """The pipeline described by ``args`` (see the module docstring)."""
    o = _options(args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(int(o.get("parallelism", "2")))
    env.enable_checkpointing(int(o.get("interval", "300")))
    config = env.get_checkpoint_config()
    if o.get("mode"):
        from streamjob.worker.config import CheckpointingMode

        config.set_checkpointing_mode(CheckpointingMode(o["mode"]))
    config.set_tolerable_checkpoint_failure_number(int(o.get("tolerable", "1000")))
    restart = o.get("restart", "1000")
    env.set_restart_strategy(
        RestartStrategies.no_restart()
        if restart == "none"
        else RestartStrategies.fixed_delay_restart(int(restart), 300)
    )
    source = o.get("source", "gen")
    if source == "gen":
        rate = float(o.get("rate", "2000"))
        stream = env.from_generator(payment, count=int(o["count"]), records_per_second=rate).uid("payments")
    elif source == "file":
        monitor = int(o["monitor_ms"]) if o.get("monitor_ms") else None
        stream = (
            env.read_text_file(o["input"], monitor_interval_ms=monitor)
            .uid("lines")
            .map(lambda line: payment(int(line)))
            .uid("parse")
        )
    elif source == "kafka":
        from streamjob.worker.connectors.kafka import KafkaSource

        kafka = KafkaSource(
            o["topic"],
            o["bootstrap"],
            o.get("group", "faultjobs"),
            bounded=o.get("bounded") == "1",
            metadata_timeout_ms=int(o.get("metadata_timeout_ms", "10000")),
            discovery_interval_ms=int(o.get("discovery_ms", "10000")),
        )
        stream = env.from_source(kafka, "Kafka").uid("kafka").map(lambda line: payment(int(line))).uid("parse")
    else:
        raise ValueError(f"unknown source {source}")
    balances = stream.key_by(lambda p: p[0]).reduce(add).uid("balances")
    if o.get("sink", "file") == "file":
        delay = int(o.get("slow_commit_ms", "0"))
        sink: FileSink = SlowCommitFileSink(o["output"], delay) if delay else FileSink(o["output"])
        if o.get("fail"):
            sink = FailingFileSink(o["output"], o["fail"])
        balances.add_sink(sink).uid("committed")
    else:
        from streamjob.worker.connectors.kafka import KafkaSink

        balances.add_sink(
            KafkaSink(
                o["out_topic"],
                o["bootstrap"],
                o.get("semantic", "exactly-once"),  # type: ignore[arg-type]
                timeout_ms=int(o.get("kafka_timeout_ms", "30000")),
                transaction_timeout_ms=int(o.get("txn_timeout_ms", "60000")),
            )
        ).uid("kafka-out")
    return env


def read_file_outputs(uri: str) -> list[Any]:
    """The committed rows under a FileSink location (``file://`` or ``s3://``)."""
    from streamjob.worker.storage.stores import open_store

    store = open_store(uri)
    rows = []
    for info in store.list(""):
        if info.key.rsplit("/", 1)[-1].startswith("part-"):
            rows.extend(json.loads(line) for line in store.get(info.key).decode().splitlines())
    return rows


def read_kafka_outputs(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[Any]:
    """Every committed record of ``topic`` (read_committed), JSON-decoded."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        consumer.assign(parts)
        pending = {p.partition for p in parts}
        rows: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    pending.discard(msg.partition())
                    continue
                rows.append(json.loads(msg.value()))
        return rows
    finally:
        consumer.close()
