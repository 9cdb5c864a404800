"""The exactly-once Kafka pipeline on the real broker: exact read_committed output at p=1 and p=2,
a worker SIGKILLed at each moment of the sink's protocol, a transaction the broker aborts by its
timeout, rescaling through savepoints, and a partition added while the job runs.

The faults are placed deterministically by the sink's test hook (``STREAMJOB_TEST_KAFKA_FAULT``,
inherited by the worker processes; once per run through a marker file): ``before-pre-commit``
(the barrier reached the sink, the interval not yet sealed), ``after-pre-commit`` (sealed, the
checkpoint not yet complete), ``before-kafka-commit`` (complete, the Kafka transaction not yet
begun) and ``during-commit`` (records and marker produced, not committed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.connectors.kafka_common import FAULT_ENV, FAULT_ONCE_ENV
from streamjob.worker.testing import LocalJob
from tests.integration.faultjobs.jobs import compare, read_kafka_outputs
from tests.integration.faultjobs.runner import JOB_FILE, run_job
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, consumed_by_savepoint
from tests.integration.test_savepoint_semantics import take_savepoint
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(300)]


def produce_lines(broker: KafkaBroker, topic: str, start: int, count: int, partitions: int) -> None:
    """Lines ``start .. start+count-1`` spread over the topic's partitions."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, str(i).encode(), partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def generated(broker: KafkaBroker, tmp_path: Path, parallelism: int, *extra: str) -> tuple[str, list[str]]:
    """A throttled generator (~3 s) -> keyed (count, sum) -> exactly-once Kafka job: many checkpoints."""
    out = broker.create_topic(f"out-{tmp_path.name[-24:]}", partitions=2)
    args = [
        "source=gen",
        f"count={COUNT}",
        "rate=2000",
        "sink=kafka",
        f"out_topic={out}",
        f"bootstrap={broker.bootstrap}",
        f"parallelism={parallelism}",
        "interval=150",
        *extra,
    ]
    return out, args


def pipeline(broker: KafkaBroker, tmp_path: Path, parallelism: int, *extra: str) -> tuple[str, list[str]]:
    """A Kafka -> keyed (count, sum) -> exactly-once Kafka job over 6,000 preloaded lines."""
    source = broker.create_topic(f"in-{tmp_path.name[-24:]}", partitions=2)
    out = broker.create_topic(f"out-{tmp_path.name[-24:]}", partitions=2)
    produce_lines(broker, source, 0, COUNT, 2)
    args = [
        "source=kafka",
        f"topic={source}",
        f"bootstrap={broker.bootstrap}",
        "bounded=1",
        "sink=kafka",
        f"out_topic={out}",
        f"parallelism={parallelism}",
        "interval=150",
        *extra,
    ]
    return out, args


COUNT = 6_000


@pytest.mark.parametrize("parallelism", [1, 2])
def test_kafka_to_kafka_output_is_exact(kafka_broker: KafkaBroker, tmp_path: Path, parallelism: int) -> None:
    out, args = pipeline(kafka_broker, tmp_path, parallelism)
    code, progress = run_job(args, tmp_path / "w", (tmp_path / "chk").as_uri())
    assert code == 0, progress.lines
    problem = compare(read_kafka_outputs(kafka_broker.bootstrap, out), COUNT, exactly_once=True)
    assert problem is None, problem


@pytest.mark.parametrize("point", ["before-pre-commit", "after-pre-commit", "before-kafka-commit", "during-commit"])
def test_a_worker_killed_at_each_moment_of_the_commit_protocol_loses_and_duplicates_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"{point}#3:kill")  # the third time: after committed checkpoints
    monkeypatch.setenv(FAULT_ONCE_ENV, str(tmp_path / "fault-fired"))
    out, args = generated(kafka_broker, tmp_path, 2)
    code, progress = run_job(args, tmp_path / "w", (tmp_path / "chk").as_uri())
    assert code == 0, progress.lines
    assert (tmp_path / "fault-fired").exists(), f"the fault at {point} never fired"
    assert progress.count("restarting") == 1, progress.lines
    problem = compare(read_kafka_outputs(kafka_broker.bootstrap, out), COUNT, exactly_once=True)
    assert problem is None, problem


def test_a_transaction_aborted_by_the_broker_timeout_is_committed_again_from_the_log(
    kafka_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the committer stalls with its Kafka transaction open for longer than the transaction timeout:
    # the broker aborts it; the commit fails loudly, the job restores and commits it again
    monkeypatch.setenv(FAULT_ENV, "during-commit#2:pause=6")
    monkeypatch.setenv(FAULT_ONCE_ENV, str(tmp_path / "fault-fired"))
    out, args = generated(kafka_broker, tmp_path, 1, "txn_timeout_ms=2000")
    code, progress = run_job(args, tmp_path / "w", (tmp_path / "chk").as_uri())
    assert code == 0, progress.lines
    assert (tmp_path / "fault-fired").exists()
    assert progress.count("restarting") == 1, progress.lines
    assert any("committing transaction" in line and "failed" in line for line in progress.lines), progress.lines
    problem = compare(read_kafka_outputs(kafka_broker.bootstrap, out), COUNT, exactly_once=True)
    assert problem is None, problem


def test_rescaling_a_kafka_job_through_savepoints_2_3_1_is_exact(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    count = 30_000  # the generator runs ~30 s unless stopped; the last run (rate 0) finishes it
    topic = kafka_broker.create_topic(f"rescale-{tmp_path.name[-20:]}", partitions=2)
    checkpoints = (tmp_path / "checkpoints").as_uri()

    def start(parallelism: int, restore: str | None, rate: str) -> Any:
        return LocalJob(
            KEYED_SUM,
            f"kafka={kafka_broker.bootstrap}",
            f"topic={topic}",
            f"count={count}",
            f"rate={rate}",
            "interval=60000",  # no periodic checkpoint races the savepoint requests
            parallelism=parallelism,
            checkpoint_dir=checkpoints,
            restore=restore,
        ).start()

    restore = None
    for parallelism, records in ((2, 2_000), (3, 1_500)):
        with start(parallelism, restore, "1000") as job:
            job.poll(f"{records} records read", lambda r=records: job.job()["records_in"] >= r, 60)
            restore = take_savepoint(job, stop=True)
            assert job.wait() == 0, job.describe()
        done = consumed_by_savepoint(restore, count)
        problem = keyed_sum.check_exactly_once(read_kafka_outputs(kafka_broker.bootstrap, topic), done)
        assert problem is None, f"after the stop at p={parallelism}: {problem}"
    with start(1, restore, "0") as job:
        assert job.wait() == 0, job.describe()
    problem = keyed_sum.check_exactly_once(read_kafka_outputs(kafka_broker.bootstrap, topic), count)
    assert problem is None, problem


def group_offsets(broker: KafkaBroker, topic: str, group: str, partitions: int) -> int:
    """The sum of ``group``'s committed offsets over the topic's partitions."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def test_a_partition_added_while_the_job_runs_is_read_from_its_start_and_group_offsets_follow(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    source = kafka_broker.create_topic(f"grow-{tmp_path.name[-24:]}", partitions=1)
    out = kafka_broker.create_topic(f"grown-{tmp_path.name[-24:]}", partitions=2)
    group = f"g-{tmp_path.name[-20:]}"
    produce_lines(kafka_broker, source, 0, 1_000, 1)
    args = [
        "source=kafka",
        f"topic={source}",
        f"bootstrap={kafka_broker.bootstrap}",
        f"group={group}",
        "discovery_ms=300",
        "sink=kafka",
        f"out_topic={out}",
        "parallelism=2",
        "interval=200",
    ]
    with LocalJob(str(JOB_FILE), *args, checkpoint_dir=(tmp_path / "chk").as_uri()).start() as job:
        job.poll(
            "the first 1,000 rows", lambda: len(read_kafka_outputs(kafka_broker.bootstrap, out, 3)) >= 1_000, 90, 0.5
        )
        kafka_broker.add_partitions(source, 3)
        produce_lines(kafka_broker, source, 1_000, 1_000, 3)  # a third into each partition, two of them new
        job.poll("all 2,000 rows", lambda: len(read_kafka_outputs(kafka_broker.bootstrap, out, 3)) >= 2_000, 90, 0.5)
        # the group's offsets (monitoring) follow the completed checkpoints
        job.poll("group offsets at the end", lambda: group_offsets(kafka_broker, source, group, 3) == 2_000, 60, 0.5)
    problem = compare(read_kafka_outputs(kafka_broker.bootstrap, out), 2_000, exactly_once=True)
    assert problem is None, problem
