"""The Kafka benchmark's plain-loop reference (``bench/kafka_ref.py``) on the real broker: its output is right.

A reference that dropped or duplicated rows would make the job look slower or faster than it is, so it is
held to the job's own standard: with one process the committed rows are the job's (every key's running
count and sum, one row per input line, nothing lost or repeated); with two processes, one row per line (each process
keeps its own partial sums: the reference has no exchange by key, which is why it is a bound, not a
rival).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from bench.kafka_pipeline import KEYS, parse
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]
LINES = 3_000


def _check_running_totals(rows: Counter[bytes], lines: int) -> None:
    """Per key the rows count 1 … n_k once each and the last holds the key's sum; every line is in one row.

    (The order among partitions is the consumer's, so which line closes a key's count is not fixed.)
    """
    parsed = [tuple(map(int, row.split(b","))) for row in rows.elements()]
    assert sorted(n for _, _, _, n in parsed) == list(range(lines))
    by_key: dict[int, list[tuple[int, int]]] = {}
    for key, count, total, _ in parsed:
        by_key.setdefault(key, []).append((count, total))
    expected: dict[int, tuple[int, int]] = {}
    for n in range(lines):
        key, one, value, _ = parse(str(n))
        count, total = expected.get(key, (0, 0))
        expected[key] = (count + one, total + value)
    assert set(by_key) == set(expected)
    for key, seen in by_key.items():
        assert sorted(c for c, _ in seen) == list(range(1, expected[key][0] + 1)), key
        assert max(seen) == expected[key], key


def _committed_rows(broker: KafkaBroker, topic: str, count: int) -> Counter[bytes]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    rows: Counter[bytes] = Counter()
    idle = 0
    while idle < 20:  # 2 s with nothing more: every committed row is in
        messages = consumer.consume(10_000, 0.1)
        idle = 0 if messages else idle + 1
        rows.update(m.value() for m in messages if m.error() is None)
    consumer.close()
    assert sum(rows.values()) >= count, f"{sum(rows.values())} committed rows, expected {count}"
    return rows


def _produce_both_partitions(broker: KafkaBroker, topic: str) -> None:
    """Line n to partition n % 2 (without a key, the sticky partitioner may put 3,000 small lines in one)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for n in range(LINES):
        producer.produce(topic, str(n).encode(), partition=n % 2)
    assert producer.flush(30) == 0


def _run_reference(broker: KafkaBroker, semantic: str, members: int) -> tuple[str, subprocess.CompletedProcess[str]]:
    tag = uuid.uuid4().hex[:8]
    source = broker.create_topic(f"rin-{tag}", 2)
    out = broker.create_topic(f"rout-{tag}", 2)
    _produce_both_partitions(broker, source)
    cmd = [sys.executable, str(REPO / "bench" / "kafka_ref.py"), broker.bootstrap, source, out, semantic]
    done = subprocess.run([*cmd, "all", str(members)], capture_output=True, text=True, timeout=180, cwd=REPO)
    return out, done


@pytest.mark.parametrize("semantic", ["exactly-once", "at-least-once"])
def test_one_process_commits_exactly_the_jobs_rows(kafka_broker: KafkaBroker, semantic: str) -> None:
    out, done = _run_reference(kafka_broker, semantic, 1)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"member 0/1: {LINES} records" in done.stdout
    _check_running_totals(_committed_rows(kafka_broker, out, LINES), LINES)


def test_two_processes_share_the_partitions_and_write_one_row_per_line(kafka_broker: KafkaBroker) -> None:
    out, done = _run_reference(kafka_broker, "exactly-once", 2)
    assert done.returncode == 0, done.stderr[-2000:]
    read = [int(line.split(": ")[1].split()[0]) for line in done.stdout.splitlines() if line.startswith("member")]
    assert read == [LINES // 2, LINES // 2]
    rows = _committed_rows(kafka_broker, out, LINES)
    assert sum(rows.values()) == LINES
    last_line_of_row = Counter(int(row.rsplit(b",", 1)[1]) for row in rows.elements())
    assert set(last_line_of_row) == set(range(LINES)) and max(last_line_of_row.values()) == 1
    assert {int(row.split(b",", 1)[0]) for row in rows} == set(range(min(KEYS, LINES)))


def test_a_wrong_semantic_is_refused_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "kafka_ref.py"), "127.0.0.1:1", "a", "b", "exactly_once", "all", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == "semantic must be exactly-once or at-least-once, not 'exactly_once'"
