"""A real Apache Kafka broker (single-node KRaft, broker + controller) on 127.0.0.1 for the tests.

The broker's jars come from Maven Central through Maven (``tests/support/kafka/pom.xml`` and
``mvn dependency:copy-dependencies``), cached outside the repository in
``~/.cache/streamjob-kafka/<version>/libs`` (``STREAMJOB_KAFKA_CACHE`` moves the cache,
``STREAMJOB_KAFKA_VERSION`` picks the version). The fixture writes a generated
``server.properties``, formats the storage with ``kafka.tools.StorageTool``, starts ``kafka.Kafka``
with ``java -cp`` and waits until the broker answers metadata requests. Session-scoped: one broker
for the whole run; ``kafka_topic`` gives each test a fresh topic. Under ``CI=true`` a broker that
cannot start fails the test (``fail_or_skip``).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import kill_group, stop_group
from tests.support.s3server import fail_or_skip, free_port

KAFKA_VERSION = os.environ.get("STREAMJOB_KAFKA_VERSION", "4.1.1")
POM = Path(__file__).parent / "kafka" / "pom.xml"


def cache_root() -> Path:
    """Where the jars of every version are cached (outside the repository)."""
    return Path(os.environ.get("STREAMJOB_KAFKA_CACHE", Path.home() / ".cache" / "streamjob-kafka"))


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka's jars, fetched with Maven on first use."""
    libs = cache_root() / version / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven ('mvn') is needed to fetch Kafka's jars; install it (apt-get install maven)")
    staging = libs.with_name(f"libs.tmp-{uuid.uuid4().hex[:8]}")
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"mvn could not fetch Kafka {version}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    (staging / ".complete").write_text(version)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


class KafkaBroker:
    """One KRaft node (``process.roles=broker,controller``) with its data in ``root``."""

    def __init__(self, root: Path, version: str = KAFKA_VERSION) -> None:
        self.root = root
        self.version = version
        self.port = free_port()
        self.controller_port = free_port()
        self.data_dir = root / "data"
        self.log_path = root / "broker.log"
        self.config_path = root / "server.properties"
        self.proc: subprocess.Popen[bytes] | None = None
        self.formatted = False

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` of the broker."""
        return f"127.0.0.1:{self.port}"

    def config(self) -> str:
        """The generated ``server.properties``: one node, replication factor 1 everywhere."""
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "1000000",
            # transactions past their timeout are aborted within a second (the timeout test)
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java is needed for the Kafka test broker (apt-get install openjdk-17-jre-headless)")
        classpath = str(kafka_libs(self.version) / "*")
        return [java, f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true", "-cp", classpath, main, *args]

    def start(self, timeout: float = 90.0) -> None:
        """Formats the storage (first start only), starts the node and waits until it serves."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        if not self.formatted:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={self.config_path}"
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka StorageTool format failed: {fmt.stderr[-2000:]}")
            self.formatted = True
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.config_path), heap="768m"),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                if admin.list_topics(timeout=2).brokers:
                    return
            except KafkaException as err:
                last = err
            time.sleep(0.3)
        raise RuntimeError(f"the Kafka broker did not become ready in {timeout}s ({last}); log: {self.log_path}")

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Creates a topic and waits until its leaders are known."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            topic = admin.list_topics(name, timeout=5).topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and len(topic.partitions) == partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                return name
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} has no leaders after 30 s")

    def add_partitions(self, name: str, total: int) -> None:
        """Grows a topic to ``total`` partitions."""
        from confluent_kafka.admin import AdminClient, NewPartitions

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_partitions([NewPartitions(name, total)]).values():
            future.result(30)

    def kill(self) -> None:
        """SIGKILL the broker (fault injection)."""
        kill_group(self.proc)

    def stop(self) -> None:
        """Stops the broker (SIGTERM, then SIGKILL after 20 s)."""
        stop_group(self.proc, 20)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's broker (started on first use)."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        broker.stop()
        fail_or_skip(str(err))
    yield broker
    broker.stop()


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker) -> str:
    """A fresh topic with 3 partitions."""
    return kafka_broker.create_topic(f"t-{uuid.uuid4().hex[:10]}", partitions=3)
