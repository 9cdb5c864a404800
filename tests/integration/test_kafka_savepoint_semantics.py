"""Savepoint semantics (Flink >= 1.15) for the exactly-once KafkaSink against a real broker.

The KafkaSink takes the two-phase-commit path that ``test_savepoint_semantics.py`` proves for the
FileSink: an intermediate savepoint commits no transaction and is no recovery point, so a worker
SIGKILLed right after one (before the next checkpoint) recovers from the checkpoint before it and
the ``read_committed`` topic holds every output exactly once; a stop-with-savepoint commits
everything before it, and a job resumed from it completes the topic exactly. The keyed-sum job
writes its rows to the topic (``kafka=``, ``topic=``); the rows are compared with a failure-free
run's, record by record.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.testing import LocalJob
from tests.integration.faultjobs.jobs import read_kafka_outputs
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM, consumed_by_savepoint, savepoint_metadata
from tests.integration.test_savepoint_semantics import checkpoint_lines, take_checkpoint, take_savepoint
from tests.support.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(300)]

COUNT = 12_000
RATE = "2000"  # events/s: the job runs ~6 s unless it is stopped or restored


def start(broker: KafkaBroker, topic: str, checkpoints: str, *, restore: str | None = None, rate: str = RATE) -> Any:
    return LocalJob(
        KEYED_SUM,
        f"kafka={broker.bootstrap}",
        f"topic={topic}",
        f"count={COUNT}",
        f"rate={rate}",
        "interval=60000",  # periodic checkpoints never come: the tests take them through REST
        parallelism=2,
        checkpoint_dir=checkpoints,
        restore=restore,
    ).start()


def wait_for_records(job: LocalJob, records: int) -> None:
    job.poll(f"{records} records read", lambda: job.job()["records_in"] >= records, 60)


def committed(broker: KafkaBroker, topic: str) -> list[Any]:
    """Every row of the topic a ``read_committed`` consumer sees."""
    return read_kafka_outputs(broker.bootstrap, topic)


def test_a_worker_kill_after_an_intermediate_savepoint_duplicates_and_loses_nothing(
    kafka_broker: KafkaBroker, tmp_path: Any
) -> None:
    topic = kafka_broker.create_topic(f"sp-crash-{tmp_path.name[-20:]}", partitions=2)
    with start(kafka_broker, topic, (tmp_path / "checkpoints").as_uri()) as job:
        wait_for_records(job, 1_000)
        first = take_checkpoint(job)
        at_checkpoint = keyed_sum.consumed(savepoint_metadata(first).source_positions["events"], COUNT)
        job.poll(
            "the checkpoint's Kafka transactions",
            lambda: keyed_sum.check_exactly_once(committed(kafka_broker, topic), at_checkpoint) is None,
            60,
        )
        wait_for_records(job, 3_000)
        savepoint = take_savepoint(job)
        assert len(checkpoint_lines(job)) == 1, "no other checkpoint may complete before the kill"
        # the savepoint committed nothing: the topic still holds exactly the checkpoint's output
        assert keyed_sum.check_exactly_once(committed(kafka_broker, topic), at_checkpoint) is None
        job.kill_worker(0)
        info = job.wait_for_running(restarts=1)
        assert info["restored_from"] == f"{first}/_metadata", "recovery restores the checkpoint, not the savepoint"
        assert job.wait() == 0, job.describe()
    at_savepoint = consumed_by_savepoint(savepoint, COUNT)
    assert len(at_checkpoint) < len(at_savepoint) < COUNT, "the savepoint covers records after the checkpoint"
    problem = keyed_sum.check_exactly_once(committed(kafka_broker, topic), COUNT)
    assert problem is None, problem


def test_stop_with_savepoint_commits_everything_before_it_and_a_resume_completes_the_topic_exactly(
    kafka_broker: KafkaBroker, tmp_path: Any
) -> None:
    topic = kafka_broker.create_topic(f"sp-stop-{tmp_path.name[-20:]}", partitions=2)
    checkpoints = (tmp_path / "checkpoints").as_uri()
    with start(kafka_broker, topic, checkpoints) as job:
        wait_for_records(job, 1_000)
        take_checkpoint(job)
        wait_for_records(job, 2_000)
        take_savepoint(job)  # intermediate: its transaction is committed by the stop-with-savepoint
        wait_for_records(job, 3_000)
        stopped = take_savepoint(job, stop=True)
        assert job.wait() == 0, job.describe()
    assert "job FINISHED" in job.output()
    read_before = consumed_by_savepoint(stopped, COUNT)
    assert 3_000 <= len(read_before) < COUNT
    problem = keyed_sum.check_exactly_once(committed(kafka_broker, topic), read_before)
    assert problem is None, f"stop-with-savepoint must commit everything before it: {problem}"

    with start(kafka_broker, topic, checkpoints, restore=stopped, rate="0") as resumed:
        assert resumed.wait() == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(committed(kafka_broker, topic), COUNT)
    assert problem is None, problem


def test_a_worker_kill_after_resuming_from_a_stop_with_savepoint_commits_its_output_once(
    kafka_broker: KafkaBroker, tmp_path: Any
) -> None:
    topic = kafka_broker.create_topic(f"sp-resume-{tmp_path.name[-20:]}", partitions=2)
    checkpoints = (tmp_path / "checkpoints").as_uri()
    with start(kafka_broker, topic, checkpoints) as job:
        wait_for_records(job, 2_000)
        stopped = take_savepoint(job, stop=True)
        assert job.wait() == 0, job.describe()
    read_before = consumed_by_savepoint(stopped, COUNT)
    assert keyed_sum.check_exactly_once(committed(kafka_broker, topic), read_before) is None
    with start(kafka_broker, topic, checkpoints, restore=stopped) as resumed:
        wait_for_records(resumed, 1_000)
        take_checkpoint(resumed)
        wait_for_records(resumed, 2_000)
        take_savepoint(resumed)
        resumed.kill_worker(1)  # after an intermediate savepoint of the resumed job, before its next checkpoint
        info = resumed.wait_for_running(restarts=1)
        assert "/chk-" in info["restored_from"]
        assert resumed.wait() == 0, resumed.describe()
    problem = keyed_sum.check_exactly_once(committed(kafka_broker, topic), COUNT)
    assert problem is None, problem
