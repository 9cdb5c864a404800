"""What the Kafka source and sink share: the error type, topic checks and test-only fault hooks.

Callers: ``kafka_source`` and ``kafka_sink``. ``fault_point`` lets the integration tests SIGKILL
or pause a worker deterministically at a named moment of the exactly-once protocol
(``STREAMJOB_TEST_KAFKA_FAULT=<point>[#<nth call>]:<kill|pause=<seconds>>``, once per marker file
``STREAMJOB_TEST_KAFKA_FAULT_ONCE``); without the variable it costs one dict lookup per call,
and it is called once per checkpoint, never per record.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from streamjob.worker.errors import StreamJobError

FAULT_ENV = "STREAMJOB_TEST_KAFKA_FAULT"
FAULT_ONCE_ENV = "STREAMJOB_TEST_KAFKA_FAULT_ONCE"
_calls: dict[str, int] = {}


class KafkaConnectorError(StreamJobError):
    """Kafka could not be reached, a topic is missing, or a transaction failed (names the fix)."""


def check_topics(client: Any, topics: list[str], bootstrap: str, timeout_s: float) -> dict[str, int]:
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


def fault_point(point: str) -> None:
    """Test-only: SIGKILL this process or pause it at ``point`` when the environment asks for it."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, action = spec.partition(":")
    name, _, nth = name.partition("#")
    if name != point:
        return
    _calls[point] = _calls.get(point, 0) + 1
    if _calls[point] < int(nth or "1"):
        return
    once = os.environ.get(FAULT_ONCE_ENV)
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    if action.startswith("pause="):
        time.sleep(float(action.removeprefix("pause=")))
        return
    os.kill(os.getpid(), signal.SIGKILL)
