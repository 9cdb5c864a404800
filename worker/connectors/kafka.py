"""Kafka source and sink (confluent-kafka), with their recovery contracts.

``KafkaSource`` — recovery contract: a split is one topic partition and its state is
``(topic, partition, next_offset)``; a restored reader seeks every partition it owns to the
stored offset, so records are neither skipped nor repeated (with an exactly-once job). Partitions
are assigned to subtasks by a stable rule (the topic's start index plus the partition number,
modulo the parallelism, as Flink's ``KafkaTopicPartitionAssigner``). The state is redistributed
as a *union*: after a restore every subtask sees every partition's offset and keeps the ones it
owns, and a partition found by discovery that no subtask has in state is known to be new (read
from the earliest offset). An even split could not tell "restored by another subtask" from "new"
without a central enumerator. Offsets are tracked per partition; ``bounded=True`` stops at the
end offsets seen at start (for tests and backfills).

``KafkaSink`` — ``semantic="none"`` produces and forgets; ``"at-least-once"`` also flushes
(waits for every acknowledgement) at the barrier, so nothing before a completed checkpoint is
lost; ``"exactly-once"`` writes each checkpoint's records in one Kafka transaction committed only
when the checkpoint completes. Recovery contract for exactly-once: librdkafka cannot resume a
transaction begun by another producer (initializing a transactional id aborts what its previous
owner left open), so a pre-committed transaction carries its records in the handle (it is a
write-ahead log in the checkpoint) and the Kafka transaction is opened, filled and committed at
commit time. Each writer subtask ``s`` owns the transactional id ``<prefix>-<s>``, and every
commit also commits, in the same transaction, an offset ``seq`` (with the run's token as
metadata) for partition 0 of the topic in the consumer group ``<prefix>-<s>``: that offset is
the marker of the last committed transaction, written atomically with the data. On restore,
the sink keeps every subtask's pending handles in union state; the new subtask ``o % P`` takes
over old writer ``o``: it initializes ``<prefix>-<o>`` (fencing the old producer and aborting any
transaction it left open), reads the marker, and commits, in order, the handles whose sequence
number is above it. Committing again is therefore idempotent and nothing pre-committed is lost.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from streamjob.worker.api.functions import CheckpointedFunction
from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction
from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.state.descriptors import ListStateDescriptor

log = logging.getLogger(__name__)

Semantic = Literal["exactly-once", "at-least-once", "none"]
_SINK_STATE: ListStateDescriptor[Any] = ListStateDescriptor("__kafka_sink__")
_EARLIEST = "earliest"


class KafkaConnectorError(StreamJobError):
    """Kafka could not be reached, a topic is missing, or a transaction failed (names the fix)."""


@dataclass(frozen=True)
class KafkaRecord:
    """What a source deserializer receives."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _utf8_value(record: KafkaRecord) -> Any:
    return None if record.value is None else record.value.decode("utf-8")


def partition_owner(topic: str, partition: int, parallelism: int) -> int:
    """The subtask that reads ``topic``/``partition`` (stable across processes and runs)."""
    start = zlib.crc32(topic.encode()) % parallelism
    return (start + partition) % parallelism


def _check_topics(client: Any, topics: list[str], bootstrap: str, timeout_s: float) -> dict[str, int]:
    """Partition counts of ``topics``; a clear error for an unreachable broker or a missing topic."""
    from confluent_kafka import KafkaException

    counts: dict[str, int] = {}
    for topic in topics:
        try:
            meta = client.list_topics(topic, timeout=timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"cannot reach the Kafka brokers at {bootstrap} within {timeout_s:.0f} s "
                f"({err.args[0]}); check bootstrap_servers and that the brokers run"
            ) from err
        found = meta.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            reason = found.error if found is not None and found.error is not None else "no partitions"
            raise KafkaConnectorError(
                f"Kafka topic {topic!r} does not exist at {bootstrap} ({reason}); "
                "create it first (topics are never created implicitly)"
            )
        counts[topic] = len(found.partitions)
    return counts


class KafkaSource(Source):
    """Records of Kafka topics; offsets in operator state (union redistribution)."""

    redistribution = "union"

    def __init__(
        self,
        topics: str | list[str],
        bootstrap_servers: str,
        group_id: str,
        *,
        starting_offsets: Literal["earliest", "latest", "committed"] = "earliest",
        discovery_interval_ms: int | None = 10_000,
        bounded: bool = False,
        deserializer: Callable[[KafkaRecord], Any] | None = None,
        properties: dict[str, Any] | None = None,
        metadata_timeout_ms: int = 10_000,
    ) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ConfigError("KafkaSource needs at least one topic")
        if starting_offsets not in ("earliest", "latest", "committed"):
            raise ConfigError(
                f"KafkaSource starting_offsets must be earliest, latest or committed, got {starting_offsets!r}"
            )
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.starting_offsets = starting_offsets
        self.discovery_interval_ms = None if bounded else discovery_interval_ms
        self.bounded = bounded
        self.deserializer = deserializer or _utf8_value
        self.properties = dict(properties or {})
        self.metadata_timeout_ms = metadata_timeout_ms

    def consumer_config(self) -> dict[str, Any]:
        """The consumer's configuration (``properties`` override the defaults)."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 3,
            **self.properties,
        }

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        known: dict[tuple[str, int], int] = {}
        for entry in restored or []:
            tp = (str(entry[0]), int(entry[1]))
            known[tp] = max(known.get(tp, -1), int(entry[2]))
        return KafkaSourceReader(self, ctx, known, restored is not None)


class KafkaSourceReader(SourceReader):
    """Reads the partitions one subtask owns; per-partition offsets are its split state."""

    def __init__(
        self, source: KafkaSource, ctx: SourceReaderContext, known: dict[tuple[str, int], int], restored: bool
    ) -> None:
        from confluent_kafka import Consumer

        self._source = source
        self._ctx = ctx
        self._known = set(known)
        self._consumer = Consumer(source.consumer_config())
        self._timeout = source.metadata_timeout_ms / 1000
        counts = _check_topics(self._consumer, source.topics, source.bootstrap_servers, self._timeout)
        self._offsets: dict[tuple[str, int], int] = {}
        self._stop: dict[tuple[str, int], int] = {}
        self._done: set[tuple[str, int]] = set()
        self._next_discovery = 0.0
        fresh = [tp for tp in self._owned(counts) if tp not in known]
        self._assign(
            {tp: off for tp, off in known.items() if self._mine(tp)},
            fresh,
            source.starting_offsets if not restored else _EARLIEST,
        )
        self._schedule_discovery()

    def _mine(self, tp: tuple[str, int]) -> bool:
        return partition_owner(tp[0], tp[1], self._ctx.parallelism) == self._ctx.subtask_index

    def _owned(self, counts: dict[str, int]) -> list[tuple[str, int]]:
        return [(t, p) for t, n in sorted(counts.items()) for p in range(n) if self._mine((t, p))]

    def _schedule_discovery(self) -> None:
        interval = self._source.discovery_interval_ms
        self._next_discovery = float("inf") if interval is None else time.monotonic() + interval / 1000

    def _resolve(self, fresh: list[tuple[str, int]], mode: str) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        resolved: dict[tuple[str, int], int] = {}
        committed: dict[tuple[str, int], int] = {}
        if mode == "committed" and fresh:
            for found in self._consumer.committed([TopicPartition(t, p) for t, p in fresh], timeout=self._timeout):
                if found.offset >= 0:
                    committed[(found.topic, found.partition)] = found.offset
        for tp in fresh:
            low, high = self._watermarks(tp)
            resolved[tp] = committed.get(tp, high if mode == "latest" else low)
        return resolved

    def _watermarks(self, tp: tuple[str, int]) -> tuple[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            found = self._consumer.get_watermark_offsets(TopicPartition(*tp), timeout=self._timeout)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka source: cannot read the offsets of {tp[0]}[{tp[1]}] at "
                f"{self._source.bootstrap_servers} ({err.args[0]})"
            ) from err
        if found is None:
            raise KafkaConnectorError(f"Kafka source: no offsets for {tp[0]}[{tp[1]}] within {self._timeout:.0f} s")
        return int(found[0]), int(found[1])

    def _assign(self, restored: dict[tuple[str, int], int], fresh: list[tuple[str, int]], mode: str) -> None:
        from confluent_kafka import TopicPartition

        offsets = {**restored, **self._resolve(fresh, mode)}
        if not offsets:
            return
        self._known.update(offsets)
        self._offsets.update(offsets)
        if self._source.bounded:
            for tp in offsets:
                self._stop[tp] = self._watermarks(tp)[1]
                if offsets[tp] >= self._stop[tp]:
                    self._done.add(tp)
        todo = [TopicPartition(t, p, off) for (t, p), off in sorted(offsets.items()) if (t, p) not in self._done]
        if todo:
            self._consumer.incremental_assign(todo)

    def _discover(self) -> None:
        counts = _check_topics(self._consumer, self._source.topics, self._source.bootstrap_servers, self._timeout)
        fresh = [tp for tp in self._owned(counts) if tp not in self._known]
        if fresh:
            log.info("Kafka source subtask %s: new partitions %s", self._ctx.subtask_index, fresh)
            self._assign({}, fresh, _EARLIEST)
        self._schedule_discovery()

    def poll(self, max_records: int) -> list[Any] | None:
        from confluent_kafka import KafkaError, TopicPartition

        if time.monotonic() >= self._next_discovery:
            self._discover()
        if self._source.bounded and len(self._done) >= len(self._offsets):
            return None
        if not self._offsets:
            return []
        out: list[Any] = []
        deserialize = self._source.deserializer
        for msg in self._consumer.consume(num_messages=max_records, timeout=0.05):
            err = msg.error()
            tp = (str(msg.topic()), int(msg.partition() or 0))
            offset = int(msg.offset() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._offsets[tp] = max(self._offsets.get(tp, 0), offset)
                    if self._source.bounded and self._offsets[tp] >= self._stop.get(tp, 0) and tp not in self._done:
                        self._done.add(tp)
                        self._consumer.incremental_unassign([TopicPartition(*tp)])
                    continue
                if err.fatal() or not err.retriable():
                    raise KafkaConnectorError(f"Kafka source on {tp[0]}[{tp[1]}]: {err.str()}")
                log.warning("Kafka source on %s[%s]: %s", tp[0], tp[1], err.str())
                continue
            self._offsets[tp] = offset + 1
            ts = msg.timestamp()[1]
            out.append(deserialize(KafkaRecord(tp[0], tp[1], offset, _as_bytes(msg.key()), _as_bytes(msg.value()), ts)))
        return out

    def snapshot(self) -> list[Any]:
        return [(t, p, off) for (t, p), off in sorted(self._offsets.items())]

    def next_poll_delay_s(self) -> float:
        return 0.0

    def close(self) -> None:
        self._consumer.close()


# -- sink -----------------------------------------------------------------------------------------


def _default_serializer(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class KafkaSink(TwoPhaseCommitSinkFunction[dict[str, Any]], CheckpointedFunction):
    """Writes records to a Kafka topic; exactly-once through transactions tied to checkpoints."""

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        semantic: Semantic = "exactly-once",
        *,
        transactional_id_prefix: str | None = None,
        serializer: Callable[[Any], bytes] | None = None,
        key_serializer: Callable[[Any], bytes | None] | None = None,
        properties: dict[str, Any] | None = None,
        timeout_ms: int = 30_000,
    ) -> None:
        if semantic not in ("exactly-once", "at-least-once", "none"):
            raise ConfigError(f"KafkaSink semantic must be exactly-once, at-least-once or none, got {semantic!r}")
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.semantic = semantic
        self.prefix = transactional_id_prefix or f"streamjob-{topic}"
        self.serializer = serializer or _default_serializer
        self.key_serializer = key_serializer
        self.properties = dict(properties or {})
        self.timeout_s = timeout_ms / 1000
        self._subtask = 0
        self._parallelism = 1
        self._producer: Any = None
        self._state: Any = None
        self._restored: list[Any] | None = None
        self._token = uuid.uuid4().hex
        self._seq = 0
        self._uncommitted: list[dict[str, Any]] = []
        self._writing: dict[str, Any] | None = None
        self._initialized = False
        self._errors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def initialize_state(self, context: Any) -> None:
        self._state = context.get_operator_state_store().get_union_list_state(_SINK_STATE)
        self._restored = list(self._state.get()) if context.is_restored() else None

    def open(self, runtime_context: Any) -> None:
        self._subtask = runtime_context.get_index_of_this_subtask()
        self._parallelism = runtime_context.get_number_of_parallel_subtasks()

    def close(self) -> None:
        if self._producer is not None and self.semantic != "exactly-once":
            self._producer.flush(self.timeout_s)

    def _config(self, **extra: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "linger.ms": 5,
            "log_level": 3,
            "error_cb": self._on_error,
            **self.properties,
            **extra,
        }

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._errors.append(err.str())

    def _writer(self, owner: int) -> Any:
        """A transactional producer for writer ``owner``'s id, initialized (fences the old owner)."""
        from confluent_kafka import KafkaException, Producer

        producer = Producer(
            self._config(**{"transactional.id": f"{self.prefix}-{owner}", "transaction.timeout.ms": 60_000})
        )
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka sink to {self.topic!r}: cannot initialize transactions at "
                f"{self.bootstrap_servers} ({err.args[0]})"
            ) from err
        return producer

    def _initialize(self) -> None:
        """First ``begin_transaction``: check the topic, take over old writers, commit their handles."""
        from confluent_kafka import Producer

        self._initialized = True
        entries = self._restored or []
        self._restored = None
        if self.semantic != "exactly-once":
            self._producer = Producer(self._config(acks="all" if self.semantic == "at-least-once" else "1"))
            _check_topics(self._producer, [self.topic], self.bootstrap_servers, self.timeout_s)
            return
        tokens = {int(e[1]): str(e[2]) for e in entries if e[0] == "writer"}
        self._token = tokens.get(self._subtask, self._token)
        handles: dict[int, list[dict[str, Any]]] = {}
        writers = set(tokens)
        for e in entries:
            if e[0] == "handle":
                handles.setdefault(int(e[1]["writer"]), []).append(e[1])
            if e[0] == "seq":  # above every writer's: a marker left by an old owner never hides a handle
                self._seq = max(self._seq, int(e[2]))
        for owner in sorted(writers | set(handles)):
            if owner % self._parallelism != self._subtask or owner == self._subtask:
                continue
            producer = self._writer(owner)  # fences the old writer, aborts what it left open
            self._commit_handles(producer, owner, tokens[owner], handles.get(owner, []))
        self._producer = self._writer(self._subtask)
        _check_topics(self._producer, [self.topic], self.bootstrap_servers, self.timeout_s)
        self._commit_handles(self._producer, self._subtask, self._token, handles.get(self._subtask, []))

    def _marker(self, owner: int, token: str) -> int:
        """The sequence number of writer ``owner``'s last committed transaction in this run (-1: none)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"{self.prefix}-{owner}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        try:
            (tp,) = consumer.committed([TopicPartition(self.topic, 0)], timeout=self.timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka sink to {self.topic!r}: cannot read the commit marker of writer {owner} ({err.args[0]})"
            ) from err
        finally:
            consumer.close()
        if tp.offset < 0 or (tp.metadata or "") != token:
            return -1
        return int(tp.offset)

    def _commit_handles(self, producer: Any, owner: int, token: str, handles: list[dict[str, Any]]) -> None:
        if not handles:
            return
        done = self._marker(owner, token)
        for handle in sorted(handles, key=lambda h: int(h["seq"])):
            if int(handle["seq"]) <= done:
                continue
            log.info("Kafka sink: committing transaction %s of writer %s found in restored state", handle["seq"], owner)
            self._transact(producer, owner, token, handle)

    def _transact(self, producer: Any, owner: int, token: str, handle: dict[str, Any]) -> None:
        """Writes a handle's records and its marker in one Kafka transaction and commits it."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        records: list[list[Any]] = handle["records"]
        meta_consumer = Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": f"{self.prefix}-{owner}", "log_level": 3}
        )
        try:
            producer.begin_transaction()
            for key, value in records:
                self._produce(producer, _unpack(value), _unpack(key))
            marker = TopicPartition(self.topic, 0, int(handle["seq"]), metadata=token)
            producer.send_offsets_to_transaction([marker], meta_consumer.consumer_group_metadata(), self.timeout_s)
            producer.commit_transaction(self.timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka sink to {self.topic!r}: committing transaction {handle['seq']} of "
                f"writer {owner} failed ({err.args[0]})"
            ) from err
        finally:
            meta_consumer.close()

    def _produce(self, producer: Any, value: bytes | None, key: bytes | None) -> None:
        while True:
            try:
                producer.produce(self.topic, value, key)
                return
            except BufferError:
                producer.poll(0.05)

    def snapshot_state(self, context: Any) -> None:
        # runs just before pre_commit: the writing transaction is about to be pre-committed
        entries: list[Any] = [("writer", self._subtask, self._token), ("seq", self._subtask, self._seq)]
        entries.extend(("handle", h) for h in self._uncommitted)
        if self._writing is not None:
            entries.append(("handle", self._writing))
        self._state.update(entries)

    # -- transactions ----------------------------------------------------------------------------

    def begin_transaction(self) -> dict[str, Any]:
        if not self._initialized:
            self._initialize()
        if self._errors:
            raise KafkaConnectorError(f"Kafka sink to {self.topic!r}: {self._errors[-1]}")
        self._seq += 1
        self._writing = {"writer": self._subtask, "seq": self._seq, "records": []}
        return self._writing

    def invoke(self, transaction: dict[str, Any], value: Any) -> None:
        self.invoke_batch(transaction, [value])

    def invoke_batch(self, transaction: dict[str, Any], values: list[Any]) -> None:
        serialize = self.serializer
        key_of = self.key_serializer
        if self.semantic == "exactly-once":
            records = transaction["records"]
            for v in values:
                records.append([_pack(key_of(v) if key_of else None), _pack(serialize(v))])
            return
        producer = self._producer
        for v in values:
            self._produce(producer, serialize(v), key_of(v) if key_of else None)
        producer.poll(0)

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        if transaction is self._writing:
            self._writing = None
        if self.semantic == "exactly-once":
            self._uncommitted.append(transaction)
            return
        if self.semantic == "at-least-once":
            remaining = self._producer.flush(self.timeout_s)
            if remaining or self._errors:
                raise KafkaConnectorError(
                    f"Kafka sink to {self.topic!r}: {remaining} records not acknowledged "
                    f"within {self.timeout_s:.0f} s at the barrier "
                    f"{self._errors[-1] if self._errors else ''}"
                )

    def commit(self, transaction: dict[str, Any]) -> None:
        if self.semantic != "exactly-once":
            return
        if transaction["records"]:
            self._transact(self._producer, self._subtask, self._token, transaction)
        self._uncommitted = [t for t in self._uncommitted if t is not transaction]

    def recover_and_commit(self, transaction: dict[str, Any]) -> None:
        """Handles are recovered from the union state in the first ``begin_transaction`` (see module doc)."""

    def recover_and_abort(self, transaction: dict[str, Any]) -> None:
        """An open transaction has written nothing to Kafka: nothing to abort."""

    def abort(self, transaction: dict[str, Any]) -> None:
        if transaction is self._writing:
            self._writing = None
        transaction["records"] = []
        self._uncommitted = [t for t in self._uncommitted if t is not transaction]


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _pack(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unpack(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)
