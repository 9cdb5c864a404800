"""The Kafka pipeline's work as a plain Python loop: the floor that ``bench.kafka_pipeline``'s job is compared with.

Run by ``bench.kafka_pipeline --reference``:
``python bench/kafka_ref.py BOOTSTRAP IN_TOPIC OUT_TOPIC SEMANTIC all MEMBERS`` starts MEMBERS processes
(the job's parallelism), each ``... SEMANTIC MEMBER MEMBERS``, and waits for them.

The same work as the job, with the same user functions (``parse``, ``add``, ``csv_row`` of
``bench.kafka_pipeline``) and the same client settings as ``KafkaSource`` and ``KafkaSink``: read the
input topic in batches until every partition's end (this process reads the partitions ``p`` with
``p % MEMBERS == MEMBER``), keep (count, sum) per key in a dict, write each update to the output topic.

- ``exactly-once``: Kafka's own consume-transform-produce loop, a transactional producer whose
  transaction is committed with the consumer's offsets every second (``send_offsets_to_transaction``);
  the cheapest exactly-once a Python program can do with Kafka;
- ``at-least-once``: a plain producer, flushed at the end.

What it leaves out, and the job cannot: the keyed state is never checkpointed (a crash loses it), there
is no framework, no exchange between processes, no barrier, no restart. It is therefore a floor, not a
competitor: what a Python loop calling these functions per record, with these client settings, does here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repository last, after the standard library it shadows
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.kafka_pipeline import add, csv_row, parse


def _consumer(bootstrap: str, group: str) -> Any:
    """A consumer with ``KafkaSource``'s own settings (the same fetch behaviour as the job's source)."""
    from confluent_kafka import Consumer

    from streamjob.worker.connectors.kafka import KafkaSource

    return Consumer(KafkaSource("unused", bootstrap, group).consumer_config())


def _producer(bootstrap: str, **extra: Any) -> Any:
    from confluent_kafka import Producer

    config = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "log_level": 3,
    }
    return Producer({**config, **extra})


def run(bootstrap: str, source: str, out: str, semantic: str, member: int, members: int) -> int:
    """Process this member's partitions to their end; returns the number of records read."""
    from confluent_kafka import TopicPartition

    group = f"ref-{out}"
    consumer = _consumer(bootstrap, group)
    partitions = len(consumer.list_topics(source, timeout=30).topics[source].partitions)
    mine = [TopicPartition(source, p, -2) for p in range(partitions) if p % members == member]
    consumer.assign(mine)
    exactly_once = semantic == "exactly-once"
    if exactly_once:
        producer = _producer(bootstrap, **{"transactional.id": f"ref-{out}-{member}"})
        producer.init_transactions(30)
        producer.begin_transaction()
    else:
        producer = _producer(bootstrap, acks="all")
    state: dict[int, tuple[int, int, int, int]] = {}
    positions: dict[int, int] = {}
    remaining = {tp.partition for tp in mine}
    read = 0
    next_commit = time.monotonic() + 1.0
    while remaining:
        for msg in consumer.consume(10_000, 0.1):
            error = msg.error()
            if error is not None:
                remaining.discard(msg.partition())  # the partition's end (enable.partition.eof)
                continue
            record = parse(msg.value().decode())
            old = state.get(record[0])
            new = record if old is None else add(old, record)
            state[record[0]] = new
            while True:
                try:
                    producer.produce(out, csv_row(new))
                    break
                except BufferError:
                    producer.poll(0.01)
            positions[msg.partition()] = msg.offset() + 1
            read += 1
        producer.poll(0)
        if exactly_once and time.monotonic() >= next_commit:
            _commit(producer, consumer, source, positions)
            producer.begin_transaction()
            next_commit = time.monotonic() + 1.0
    if exactly_once:
        _commit(producer, consumer, source, positions)
    else:
        producer.flush(120)
    consumer.close()
    return read


def _commit(producer: Any, consumer: Any, source: str, positions: dict[int, int]) -> None:
    from confluent_kafka import TopicPartition

    offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(60)


def main(argv: list[str]) -> int:
    bootstrap, source, out, semantic, member, members = argv
    if semantic not in ("exactly-once", "at-least-once"):
        raise SystemExit(f"semantic must be exactly-once or at-least-once, not {semantic!r}")
    if member == "all":
        cmd = [sys.executable, __file__, bootstrap, source, out, semantic]
        procs = [subprocess.Popen([*cmd, str(m), members]) for m in range(int(members))]
        return max(proc.wait() for proc in procs)
    read = run(bootstrap, source, out, semantic, int(member), int(members))
    print(f"member {member}/{members}: {read} records", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
