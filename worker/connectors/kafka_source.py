"""The Kafka source: per-partition offsets as split state, batched reads, partition discovery.

Recovery contract: a split is one topic partition and its state is ``(topic, partition,
next_offset)``; a restored reader seeks every partition it owns to the stored offset, so records
are neither skipped nor repeated (with an exactly-once job). Partitions are assigned to subtasks by
a stable rule (the topic's start index plus the partition number, modulo the parallelism, as
Flink's ``KafkaTopicPartitionAssigner``). The state is redistributed as a *union*: after a restore
every subtask sees every partition's offset and keeps the ones it owns, and a partition found by
discovery that no subtask has in state is new (read from the earliest offset, so nothing written to
it before it was discovered is skipped). ``bounded=True`` stops at the end offsets seen at start.

Speed: one ``consume(num_messages=…)`` call per poll hands the whole batch to the chain; with the
default deserializer a batch without events or tombstones is decoded by C-level ``map`` calls
(no Python frame per record); offsets are not tracked per record
but read from the consumer's position (last record handed out + 1) when a checkpoint is taken.

Progress for monitoring: when a checkpoint completes, the offsets it stored are committed to the
consumer group ``group_id`` (asynchronously, as Flink does). They are never read on recovery
(the checkpoint is); ``starting_offsets="committed"`` reads them only for a job's first start.
Callers: user jobs through ``streamjob.worker.connectors.kafka``.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from streamjob.worker.api.functions import CheckpointedFunction, CheckpointListener
from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext
from streamjob.worker.connectors.kafka_common import KafkaConnectorError, check_topics
from streamjob.worker.errors import ConfigError

log = logging.getLogger(__name__)

StartingOffsets = Literal["earliest", "latest", "committed", "timestamp"]
_MODES = ("earliest", "latest", "committed", "timestamp")
TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a custom source deserializer receives."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def partition_owner(topic: str, partition: int, parallelism: int) -> int:
    """The subtask that reads ``topic``/``partition`` (stable across processes and runs)."""
    start = zlib.crc32(topic.encode()) % parallelism
    return (start + partition) % parallelism


class KafkaSource(Source, CheckpointedFunction, CheckpointListener):
    """Records of Kafka topics; offsets in operator state (union redistribution)."""

    redistribution = "union"

    def __init__(
        self,
        topics: str | list[str],
        bootstrap_servers: str,
        group_id: str,
        *,
        starting_offsets: StartingOffsets = "earliest",
        starting_timestamp_ms: int | None = None,
        discovery_interval_ms: int | None = 10_000,
        bounded: bool = False,
        deserializer: Callable[[KafkaRecord], Any] | None = None,
        properties: dict[str, Any] | None = None,
        metadata_timeout_ms: int = 10_000,
        commit_offsets_on_checkpoint: bool = True,
    ) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ConfigError("KafkaSource needs at least one topic")
        if starting_offsets not in _MODES:
            raise ConfigError(
                f"KafkaSource starting_offsets must be one of {', '.join(_MODES)}, got {starting_offsets!r}"
            )
        if (starting_offsets == "timestamp") != (starting_timestamp_ms is not None):
            raise ConfigError(
                "KafkaSource: starting_timestamp_ms (epoch milliseconds) is required with "
                "starting_offsets='timestamp' and only allowed with it"
            )
        if discovery_interval_ms is not None and discovery_interval_ms <= 0:
            raise ConfigError("KafkaSource discovery_interval_ms must be > 0 (or None to turn discovery off)")
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.starting_offsets = starting_offsets
        self.starting_timestamp_ms = starting_timestamp_ms
        self.discovery_interval_ms = None if bounded else discovery_interval_ms
        self.bounded = bounded
        self.deserializer = deserializer
        self.properties = dict(properties or {})
        self.metadata_timeout_ms = metadata_timeout_ms
        self.commit_offsets_on_checkpoint = commit_offsets_on_checkpoint
        self._reader: KafkaSourceReader | None = None

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
            "fetch.min.bytes": 1,
            # librdkafka postpones a partition's next fetch by this much once its local queue holds
            # queued.min.messages (default 1000 ms): a consumer faster than one fetch stalls for a
            # second every ~100k records (1M records took 6 s instead of 1.2 s on the benchmark)
            "fetch.queue.backoff.ms": 10,
            "log_level": 3,
            **self.properties,
        }

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        known: dict[TP, int] = {}
        for entry in restored or []:
            tp = (str(entry[0]), int(entry[1]))
            known[tp] = max(known.get(tp, -1), int(entry[2]))
        self._reader = KafkaSourceReader(self, ctx, known, restored is not None)
        return self._reader

    # -- consumer-group offsets for monitoring ---------------------------------------------------

    def initialize_state(self, context: Any) -> None:
        """The offsets live in the source operator's split state; nothing of its own."""

    def snapshot_state(self, context: Any) -> None:
        if self._reader is not None and self.commit_offsets_on_checkpoint:
            self._reader.remember(int(context.get_checkpoint_id()))

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self._reader is not None and self.commit_offsets_on_checkpoint:
            self._reader.commit_group_offsets(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self._reader is not None:
            self._reader.forget(checkpoint_id)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None
        return state


class KafkaSourceReader(SourceReader):
    """Reads the partitions one subtask owns; per-partition offsets are its split state."""

    def __init__(self, source: KafkaSource, ctx: SourceReaderContext, known: dict[TP, int], restored: bool) -> None:
        from confluent_kafka import Consumer, Message

        self._error: Callable[[Any], Any] = Message.error  # called through map(): no Python frame per record
        self._value: Callable[[Any], Any] = Message.value
        self._source = source
        self._ctx = ctx
        self._known = set(known)
        self._consumer = Consumer(source.consumer_config())
        self._timeout = source.metadata_timeout_ms / 1000
        counts = check_topics(self._consumer, source.topics, source.bootstrap_servers, self._timeout)
        self._offsets: dict[TP, int] = {}
        self._active: list[Any] = []  # TopicPartitions assigned and not finished
        self._stop: dict[TP, int] = {}
        self._done: set[TP] = set()
        self._remembered: dict[int, list[tuple[str, int, int]]] = {}
        self._next_discovery = 0.0
        fresh = [tp for tp in self._owned(counts) if tp not in known]
        self._assign(
            {tp: off for tp, off in known.items() if self._mine(tp)},
            fresh,
            source.starting_offsets if not restored else "earliest",
        )
        self._schedule_discovery()

    def _mine(self, tp: TP) -> bool:
        return partition_owner(tp[0], tp[1], self._ctx.parallelism) == int(self._ctx.subtask_index)

    def _owned(self, counts: dict[str, int]) -> list[TP]:
        return [(t, p) for t, n in sorted(counts.items()) for p in range(n) if self._mine((t, p))]

    def _schedule_discovery(self) -> None:
        interval = self._source.discovery_interval_ms
        self._next_discovery = float("inf") if interval is None else time.monotonic() + interval / 1000

    def _resolve(self, fresh: list[TP], mode: str) -> dict[TP, int]:
        """Start offsets of partitions not in the restored state, by ``starting_offsets``."""
        from confluent_kafka import KafkaException, TopicPartition

        found: dict[TP, int] = {}
        try:
            if mode == "committed" and fresh:
                asked = [TopicPartition(t, p) for t, p in fresh]
                for part in self._consumer.committed(asked, timeout=self._timeout):
                    if part.offset >= 0:
                        found[(part.topic, part.partition)] = part.offset
            if mode == "timestamp" and fresh:
                ts = int(self._source.starting_timestamp_ms or 0)
                asked = [TopicPartition(t, p, ts) for t, p in fresh]
                for part in self._consumer.offsets_for_times(asked, timeout=self._timeout):
                    if part.offset >= 0:
                        found[(part.topic, part.partition)] = part.offset
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka source: cannot resolve starting_offsets={mode!r} for {fresh} at "
                f"{self._source.bootstrap_servers} ({err.args[0]})"
            ) from err
        resolved: dict[TP, int] = {}
        for tp in fresh:
            if tp in found:
                resolved[tp] = found[tp]
                continue
            low, high = self._watermarks(tp)
            # latest, and a timestamp after the partition's last record, start at the end
            resolved[tp] = high if mode in ("latest", "timestamp") else low
        return resolved

    def _watermarks(self, tp: TP) -> tuple[int, int]:
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

    def _assign(self, restored: dict[TP, int], fresh: list[TP], mode: str) -> None:
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
            self._active.extend(TopicPartition(tp.topic, tp.partition) for tp in todo)

    def _discover(self) -> None:
        counts = check_topics(self._consumer, self._source.topics, self._source.bootstrap_servers, self._timeout)
        fresh = [tp for tp in self._owned(counts) if tp not in self._known]
        if fresh:
            log.info("Kafka source subtask %s: new partitions %s", self._ctx.subtask_index, fresh)
            self._assign({}, fresh, "earliest")
        self._schedule_discovery()

    def _messages(self, max_records: int) -> list[Any] | None:
        """The next messages (records and partition events); None at the end of a bounded read."""
        if time.monotonic() >= self._next_discovery:
            self._discover()
        if self._source.bounded and len(self._done) >= len(self._offsets):
            return None
        if not self._active:
            return []
        # consume(n, timeout) waits for n records or the timeout: take what is queued at once, and
        # block (briefly, for one record) only when nothing is
        consume = self._consumer.consume
        return consume(num_messages=max_records, timeout=0) or consume(num_messages=1, timeout=0.05)  # type: ignore[no-any-return]

    def poll(self, max_records: int) -> list[Any] | None:
        messages = self._messages(max_records)
        if messages is None:
            return None
        deserialize = self._source.deserializer
        if deserialize is None and not any(map(self._error, messages)):
            try:  # a batch of records only, no tombstone: decoded without a Python call per record
                return list(map(bytes.decode, map(self._value, messages)))
            except TypeError:  # a None value among them: the loop below
                pass
        out: list[Any] = []
        append = out.append
        if deserialize is None:
            for msg in messages:
                if msg.error() is None:
                    value = msg.value()
                    append(None if value is None else value.decode("utf-8"))
                else:
                    self._on_event(msg)
            return out
        for msg in messages:
            if msg.error() is None:
                record = KafkaRecord(
                    str(msg.topic()),
                    int(msg.partition() or 0),
                    int(msg.offset() or 0),
                    _as_bytes(msg.key()),
                    _as_bytes(msg.value()),
                    msg.timestamp()[1],
                )
                append(deserialize(record))
            else:
                self._on_event(msg)
        return out

    def poll_splits(self, max_records: int) -> list[tuple[Any, list[Any]]] | None:
        """``poll`` in runs of one partition each (split id ``(topic, partition)``): per-partition watermarks."""
        messages = self._messages(max_records)
        if messages is None:
            return None
        deserialize = self._source.deserializer
        runs: list[tuple[Any, list[Any]]] = []
        current: TP | None = None
        records: list[Any] = []
        for msg in messages:
            if msg.error() is not None:
                self._on_event(msg)
                continue
            tp = (str(msg.topic()), int(msg.partition() or 0))
            if tp != current:
                current, records = tp, []
                runs.append((tp, records))
            if deserialize is None:
                value = msg.value()
                records.append(None if value is None else value.decode("utf-8"))
            else:
                records.append(
                    deserialize(
                        KafkaRecord(
                            tp[0],
                            tp[1],
                            int(msg.offset() or 0),
                            _as_bytes(msg.key()),
                            _as_bytes(msg.value()),
                            msg.timestamp()[1],
                        )
                    )
                )
        return runs

    def active_splits(self) -> list[Any]:
        """The partitions assigned and not finished, as ``(topic, partition)``."""
        return [(str(a.topic), int(a.partition)) for a in self._active]

    def _on_event(self, msg: Any) -> None:
        """An end-of-partition event or an error."""
        from confluent_kafka import KafkaError, TopicPartition

        err = msg.error()
        tp = (str(msg.topic()), int(msg.partition() or 0))
        if err.code() == KafkaError._PARTITION_EOF:
            self._offsets[tp] = max(self._offsets.get(tp, 0), int(msg.offset() or 0))
            if self._source.bounded and self._offsets[tp] >= self._stop.get(tp, 0) and tp not in self._done:
                self._done.add(tp)
                self._consumer.incremental_unassign([TopicPartition(*tp)])
                self._active = [a for a in self._active if (a.topic, a.partition) != tp]
            return
        if err.fatal() or not err.retriable():
            raise KafkaConnectorError(f"Kafka source on {tp[0]}[{tp[1]}]: {err.str()}")
        log.warning("Kafka source on %s[%s]: %s", tp[0], tp[1], err.str())

    def snapshot(self) -> list[Any]:
        if self._active:
            for tp in self._consumer.position(self._active):
                if tp.offset >= 0:
                    key = (tp.topic, tp.partition)
                    self._offsets[key] = max(self._offsets[key], tp.offset)
        return [(t, p, off) for (t, p), off in sorted(self._offsets.items())]

    def remember(self, checkpoint_id: int) -> None:
        """Keeps the offsets of checkpoint ``checkpoint_id`` until it completes or aborts."""
        self._remembered[checkpoint_id] = self.snapshot()

    def forget(self, checkpoint_id: int) -> None:
        self._remembered.pop(checkpoint_id, None)

    def commit_group_offsets(self, checkpoint_id: int) -> None:
        """Commits the offsets of the newest remembered checkpoint up to ``checkpoint_id`` (async)."""
        from confluent_kafka import KafkaException, TopicPartition

        done = [cid for cid in self._remembered if cid <= checkpoint_id]
        if not done:
            return
        offsets = self._remembered[max(done)]
        for cid in done:
            del self._remembered[cid]
        mine = [TopicPartition(t, p, off) for t, p, off in offsets if self._mine((t, p))]
        if not mine:
            return
        try:
            self._consumer.commit(offsets=mine, asynchronous=True)
        except KafkaException as err:  # monitoring only: never fails the job
            log.warning("Kafka source: committing group offsets for monitoring failed: %s", err.args[0])

    def next_poll_delay_s(self) -> float:
        return 0.0

    def close(self) -> None:
        self._consumer.close()
