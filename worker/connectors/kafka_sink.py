"""The Kafka sink: at-least-once by flushing at the barrier, exactly-once by a write-ahead log.

``semantic="none"`` produces and forgets; ``"at-least-once"`` also flushes (waits for every
acknowledgement) at the barrier, so nothing before a completed checkpoint is lost; delivery
failures are reported by librdkafka (``delivery.report.only.error``) and fail the job.

``"exactly-once"``: librdkafka cannot resume a transaction begun by another producer
(``init_transactions`` always bumps the epoch and aborts what the previous owner left open; the
2PC recovery of KIP-939 is Java-only and not served by Kafka 4.1 brokers), so a transaction that
must survive a crash cannot live in Kafka between the barrier and the commit. The sink therefore
keeps a write-ahead log: an interval's records are serialized once into a compact blob
(``kafka_wal``) at the barrier and stored in the sink's own even-split operator state (one element
per writer, restored by exactly one subtask, never a union); the 2PC operator's handle is only
``{wid, seq}``. When the checkpoint completes, a committer thread opens a Kafka transaction,
produces the blob's records and a marker and commits, while the task goes on with the next interval.

Recovery contract: every attempt of subtask ``s`` writes as writer ``<prefix>-<s>-<token>`` (its
transactional id, and the consumer group whose offset for partition 0 of the topic is the marker:
``seq`` of the last committed transaction, committed atomically with the data). A restored subtask
takes over each writer element it receives: ``init_transactions`` on that id fences the old
producer and aborts a transaction it left open (or the broker already aborted it by timeout:
the records are still in the log), the marker says which handles were committed, and the others
are committed in order. Committing again is idempotent; nothing pre-committed is lost. A writer
that committed before but whose marker is gone (the group's offsets expired) fails the restore
with a clear error instead of guessing.
Callers: user jobs through ``streamjob.worker.connectors.kafka``.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from streamjob.worker.api.functions import CheckpointedFunction
from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction
from streamjob.worker.connectors import kafka_wal
from streamjob.worker.connectors.kafka_common import KafkaConnectorError, check_topics, fault_point
from streamjob.worker.errors import ConfigError
from streamjob.worker.state.descriptors import ListStateDescriptor

log = logging.getLogger(__name__)

Semantic = Literal["exactly-once", "at-least-once", "none"]
_WAL_STATE: ListStateDescriptor[Any] = ListStateDescriptor("__kafka_sink_wal__")
_LEGACY_STATE: ListStateDescriptor[Any] = ListStateDescriptor("__kafka_sink__")


def _default_serializer(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class KafkaSink(TwoPhaseCommitSinkFunction[dict[str, Any]], CheckpointedFunction):
    """Writes records to a Kafka topic; exactly-once through a write-ahead log and transactions."""

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
        transaction_timeout_ms: int = 60_000,
        max_pending_commits: int = 1,
    ) -> None:
        if semantic not in ("exactly-once", "at-least-once", "none"):
            raise ConfigError(f"KafkaSink semantic must be exactly-once, at-least-once or none, got {semantic!r}")
        if max_pending_commits < 1:
            raise ConfigError("KafkaSink max_pending_commits must be >= 1")
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.semantic = semantic
        self.prefix = transactional_id_prefix or f"streamjob-{topic}"
        self.serializer = serializer or _default_serializer
        self.key_serializer = key_serializer
        self.properties = dict(properties or {})
        self.timeout_s = timeout_ms / 1000
        self.transaction_timeout_ms = transaction_timeout_ms
        self.max_pending_commits = max_pending_commits
        self._subtask = 0
        self._parallelism = 1
        self._producer: Any = None
        self._state: Any = None
        self._restored: list[dict[str, Any]] = []
        self._wid = ""
        self._token = uuid.uuid4().hex
        self._seq = 0
        self._sealed = 0
        self._values: list[bytes | None] = []
        self._keys: list[bytes | None] = []
        self._pending: dict[int, bytes] = {}  # sealed, not yet committed: seq -> blob
        self._queue: deque[int] = deque()  # handed to the committer, in order
        self._committed = -1
        self._cv = threading.Condition()
        self._committer: threading.Thread | None = None
        self._closing = False
        self._failure: BaseException | None = None
        self._initialized = False
        self._errors: list[str] = []
        self._legacy: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cv"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cv = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------------

    def initialize_state(self, context: Any) -> None:
        store = context.get_operator_state_store()
        self._state = store.get_list_state(_WAL_STATE)
        if context.is_restored():
            self._restored = [dict(e) for e in self._state.get()]
            legacy = store.get_union_list_state(_LEGACY_STATE)
            self._legacy = list(legacy.get())
            legacy.clear()  # converted below; never carried into the next checkpoints

    def open(self, runtime_context: Any) -> None:
        self._subtask = runtime_context.get_index_of_this_subtask()
        self._parallelism = runtime_context.get_number_of_parallel_subtasks()
        self._wid = f"{self.prefix}-{self._subtask}-{self._token[:12]}"
        self._restored.extend(self._legacy_writers(self._legacy))
        self._legacy = []

    def close(self) -> None:
        """Drains the committer (commits of completed checkpoints), then closes the producer."""
        try:
            if self._committer is not None:
                with self._cv:
                    self._closing = True
                    self._cv.notify_all()
                self._committer.join()
                self._committer = None
            self._raise_failure()
        finally:
            if self._producer is not None:
                if self.semantic != "exactly-once":
                    self._producer.flush(self.timeout_s)
                self._producer = None

    def _config(self, **extra: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "log_level": 3,
            "error_cb": self._on_error,
            **self.properties,
            **extra,
        }

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._errors.append(err.str())

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"delivery failed: {err.str()}")

    # -- exactly-once: writers, markers, transactions --------------------------------------------

    def _writer(self, wid: str) -> Any:
        """A transactional producer for ``wid``, initialized (fences its previous owner)."""
        from confluent_kafka import KafkaException, Producer

        producer = Producer(
            self._config(**{"transactional.id": wid, "transaction.timeout.ms": self.transaction_timeout_ms})
        )
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as err:
            hint = ""
            if "timeout" in str(err.args[0]).lower() and "transaction" in str(err.args[0]).lower():
                hint = (
                    f"; transaction_timeout_ms={self.transaction_timeout_ms} must not exceed the "
                    "broker's transaction.max.timeout.ms"
                )
            raise KafkaConnectorError(
                f"Kafka sink to {self.topic!r}: cannot initialize transactions for {wid!r} at "
                f"{self.bootstrap_servers} ({err.args[0]}){hint}"
            ) from err
        return producer

    def _meta_consumer(self, wid: str) -> Any:
        from confluent_kafka import Consumer

        return Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": wid,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )

    def _marker(self, consumer: Any, wid: str, token: str) -> int:
        """``seq`` of writer ``wid``'s last committed transaction (-1: none)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            (tp,) = consumer.committed([TopicPartition(self.topic, 0)], timeout=self.timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka sink to {self.topic!r}: cannot read the commit marker of writer {wid!r} ({err.args[0]})"
            ) from err
        if tp.offset < 0 or (tp.metadata or "") != token:
            return -1
        return int(tp.offset)

    def _transact(self, producer: Any, consumer: Any, wid: str, token: str, seq: int, blob: bytes) -> None:
        """Produces a blob's records and its marker in one Kafka transaction and commits it."""
        from confluent_kafka import KafkaException, TopicPartition

        topic = self.topic
        try:
            producer.begin_transaction()
            produce = producer.produce
            plain = kafka_wal.plain_values(blob)
            if plain is not None:  # the common case: a tight loop, no per-record callback or decode frame
                for data in plain:
                    try:
                        produce(topic, data)
                    except BufferError:  # the bounded local queue is full: wait for acknowledgements
                        self._produce_when_queued(producer, data, None)
            else:
                for key, value in kafka_wal.decode(blob):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self._produce_when_queued(producer, value, key)
            producer.poll(0)
            marker = TopicPartition(topic, 0, seq, metadata=token)
            producer.send_offsets_to_transaction([marker], consumer.consumer_group_metadata(), self.timeout_s)
            fault_point("during-commit")
            producer.commit_transaction(self.timeout_s)
        except KafkaException as err:
            raise KafkaConnectorError(
                f"Kafka sink to {topic!r}: committing transaction {seq} of writer {wid!r} failed "
                f"({err.args[0]}); if it was fenced or timed out (transaction_timeout_ms="
                f"{self.transaction_timeout_ms}), the job restarts from its last checkpoint and "
                "commits the transaction again from the write-ahead log; if another job writes "
                "with the same transactional_id_prefix, give each job its own"
            ) from err

    def _produce_when_queued(self, producer: Any, value: bytes | None, key: bytes | None) -> None:
        while True:
            producer.poll(0.05)
            try:
                producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def _recover(self, entry: dict[str, Any]) -> None:
        """Takes over an old writer: fence it, then commit its handles the marker does not cover."""
        wid, token = str(entry["wid"]), str(entry["token"])
        handles = sorted(entry.get("handles", []), key=lambda h: int(h["seq"]))
        producer = self._writer(wid)  # fences the old writer, aborts what it left open
        consumer = self._meta_consumer(wid)
        try:
            done = self._marker(consumer, wid, token) if handles else -1
            if handles and done < 0 and int(entry.get("committed", -1)) >= 0:
                raise KafkaConnectorError(
                    f"Kafka sink to {self.topic!r}: the commit marker of writer {wid!r} (consumer group "
                    f"{wid!r}, offset of {self.topic}[0]) is gone although transaction "
                    f"{entry['committed']} was committed: the group's offsets expired "
                    "(offsets.retention.minutes) or were deleted while the job was down; it cannot be "
                    f"told which of transactions {[int(h['seq']) for h in handles]} reached Kafka. "
                    "Restore with a newer checkpoint, or raise offsets.retention.minutes"
                )
            for handle in handles:
                seq = int(handle["seq"])
                if seq <= done:
                    continue
                log.info("Kafka sink: committing transaction %s of writer %s found in restored state", seq, wid)
                self._transact(producer, consumer, wid, token, seq, bytes(handle["records"]))
        finally:
            consumer.close()
            producer.flush(self.timeout_s)

    def _legacy_writers(self, entries: list[Any]) -> list[dict[str, Any]]:
        """Writers of the previous format (base64 records in union state) that this subtask takes over."""
        import base64

        tokens = {int(e[1]): str(e[2]) for e in entries if e[0] == "writer"}
        out: list[dict[str, Any]] = []
        for owner, token in sorted(tokens.items()):
            if owner % self._parallelism != self._subtask:
                continue
            handles = []
            for e in entries:
                if e[0] == "handle" and int(e[1]["writer"]) == owner:
                    records = e[1]["records"]
                    keys = [None if k is None else base64.b64decode(k) for k, _ in records]
                    values = [None if v is None else base64.b64decode(v) for _, v in records]
                    blob = kafka_wal.encode(values, keys if any(k is not None for k in keys) else None)
                    handles.append({"seq": int(e[1]["seq"]), "records": blob})
            out.append({"wid": f"{self.prefix}-{owner}", "token": token, "committed": -1, "handles": handles})
        return out

    def _run_committer(self) -> None:
        """The committer thread: commits sealed handles in order, off the task's loop."""
        consumer = self._meta_consumer(self._wid)
        try:
            while True:
                with self._cv:
                    while not self._queue and not self._closing:
                        self._cv.wait()
                    if not self._queue:
                        return
                    seq = self._queue[0]
                    blob = self._pending[seq]
                try:
                    fault_point("before-kafka-commit")
                    self._transact(self._producer, consumer, self._wid, self._token, seq, blob)
                except BaseException as err:  # handed to the task thread
                    with self._cv:
                        self._failure = err
                        self._queue.clear()
                        self._cv.notify_all()
                    return
                with self._cv:
                    self._queue.popleft()
                    self._pending.pop(seq, None)
                    self._committed = seq
                    self._cv.notify_all()
        finally:
            consumer.close()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure = self._failure
            if isinstance(failure, KafkaConnectorError):
                raise KafkaConnectorError(str(failure)) from failure
            raise KafkaConnectorError(f"Kafka sink to {self.topic!r}: commit failed: {failure!r}") from failure
        if self._errors:
            raise KafkaConnectorError(f"Kafka sink to {self.topic!r}: {self._errors[-1]}")

    def _initialize(self) -> None:
        """First ``begin_transaction``: take over restored writers, check the topic, start the committer."""
        from confluent_kafka import Producer

        self._initialized = True
        if self.semantic != "exactly-once":
            acks = "all" if self.semantic == "at-least-once" else "1"
            self._producer = Producer(
                self._config(acks=acks, on_delivery=self._on_delivery, **{"delivery.report.only.error": True})
            )
            check_topics(self._producer, [self.topic], self.bootstrap_servers, self.timeout_s)
            return
        for entry in self._restored:
            self._recover(entry)
        self._restored = []
        self._producer = self._writer(self._wid)
        check_topics(self._producer, [self.topic], self.bootstrap_servers, self.timeout_s)
        self._committer = threading.Thread(
            target=self._run_committer, name=f"kafka-commit-{self._subtask}", daemon=True
        )
        self._committer.start()

    def _seal(self) -> None:
        """Closes the open interval: its records become one blob pending commit."""
        if self._sealed == self._seq:
            return
        self._sealed = self._seq
        if self._values:
            blob = kafka_wal.encode(self._values, self._keys if self.key_serializer is not None else None)
            with self._cv:
                self._pending[self._seq] = blob
        self._values = []
        self._keys = []

    def snapshot_state(self, context: Any) -> None:
        # runs just before pre_commit: the open interval is sealed into the log here
        if self.semantic != "exactly-once":
            return
        self._raise_failure()
        fault_point("before-pre-commit")
        self._seal()
        with self._cv:  # bounded: a committer far behind slows the job instead of growing memory
            while len(self._queue) >= self.max_pending_commits and self._failure is None:
                self._cv.wait(0.5)
            handles = [{"seq": s, "records": b} for s, b in sorted(self._pending.items())]
            entry = {"wid": self._wid, "token": self._token, "committed": self._committed, "handles": handles}
        self._raise_failure()
        self._state.update([entry])

    # -- the two-phase-commit contract -----------------------------------------------------------

    def begin_transaction(self) -> dict[str, Any]:
        if not self._initialized:
            self._initialize()
        self._raise_failure()
        self._seq += 1
        return {"wid": self._wid, "seq": self._seq}

    def invoke(self, transaction: dict[str, Any], value: Any) -> None:
        self.invoke_batch(transaction, [value])

    def invoke_batch(self, transaction: dict[str, Any], values: list[Any]) -> None:
        serialize = self.serializer
        key_of = self.key_serializer
        if self.semantic == "exactly-once":
            self._values.extend(map(serialize, values))
            if key_of is not None:
                self._keys.extend(map(key_of, values))
            return
        producer = self._producer
        produce = producer.produce
        topic = self.topic
        if key_of is None:  # a tight loop, no per-record delivery callback (failures: one error_cb/dr check)
            for data in map(serialize, values):
                try:
                    produce(topic, data)
                except BufferError:  # the bounded local queue is full: wait for acknowledgements
                    self._produce_when_queued(producer, data, None)
        else:
            for v in values:
                data, key = serialize(v), key_of(v)
                try:
                    produce(topic, data, key)
                except BufferError:
                    self._produce_when_queued(producer, data, key)
        producer.poll(0)  # once per batch: serves the (error-only) delivery reports
        if self._errors:
            self._raise_failure()

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        if self.semantic == "exactly-once":
            self._seal()
            fault_point("after-pre-commit")
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
        """Hands the handle to the committer thread (returns at once)."""
        if self.semantic != "exactly-once":
            return
        self._raise_failure()
        seq = int(transaction["seq"])
        with self._cv:
            if seq in self._pending and seq not in self._queue:
                self._queue.append(seq)
                self._cv.notify_all()

    def recover_and_commit(self, transaction: dict[str, Any]) -> None:
        """Handles are recovered from the sink's own state in the first ``begin_transaction``."""

    def recover_and_abort(self, transaction: dict[str, Any]) -> None:
        """An open interval has written nothing to Kafka: nothing to abort."""

    def abort(self, transaction: dict[str, Any]) -> None:
        seq = int(transaction["seq"])
        if seq == self._seq and self._sealed != seq:
            self._values = []
            self._keys = []
            self._sealed = seq
        with self._cv:
            if seq not in self._queue:
                self._pending.pop(seq, None)
