"""End-to-end benchmark: Kafka -> keyed state -> exactly-once FileSink on S3, checkpoints every 1 s.

Run: ``.venv/bin/python -m bench.kafka_e2e [--records 200000] [--rate 5000] [--seconds 20]
[--parallelism 2] [--partitions 4]`` (needs Java and Maven for the broker, like the Kafka tests;
starts its own Kafka broker and SeaweedFS S3 server on 127.0.0.1 and stops them).

Two phases, each a ``streamjob run`` of this file's ``build`` pipeline:

1. **throughput** — ``--records`` records are preloaded into the topic; the job reads them (bounded
   to the end offsets at start), keeps a per-key running count and sum, and commits every output
   row to S3 with each checkpoint. Throughput = records / (first attempt running -> job finished).
2. **latency** — the job runs unbounded while a producer writes ``--rate`` records/s for
   ``--seconds``; a watcher lists the output prefix every 50 ms and reads each committed part file
   as it appears. A record's latency = time its part file became visible - time it was produced
   (arrival in Kafka). Reported as p50/p99 (resolution ~50 ms plus one S3 listing).

Prints one JSON line with the figures. The figures on a shared, oversubscribed machine are lower
bounds of what the runtime does with its own CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

USERS = 1000


def build(args: list[str]) -> Any:
    """The benchmark pipeline: ``bootstrap topic output [bounded]``."""
    from streamjob.worker.api import StreamExecutionEnvironment
    from streamjob.worker.api.file_sink import FileSink
    from streamjob.worker.connectors.kafka import KafkaSource

    bootstrap, topic, output, bounded = args[0], args[1], args[2], args[3] == "1"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(1000)
    source = KafkaSource(topic, bootstrap, "bench", bounded=bounded)
    env.from_source(source, "Kafka").uid("kafka").map(
        lambda line: (f"k{int(line) % USERS}", 1, int(line) % 100, int(line))
    ).uid("parse").key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1], a[2] + b[2], b[3])).uid(
        "totals"
    ).add_sink(FileSink(output)).uid("committed")
    return env


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _produce(
    bootstrap: str, topic: str, start: int, count: int, rate: float | None, produced: dict[int, float]
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    began = time.monotonic()
    for n in range(count):
        i = start + n
        if rate is not None:
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(topic, str(i).encode())
                break
            except BufferError:
                producer.poll(0.01)
        produced[i] = time.time()
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(60)


def _job(
    bootstrap: str,
    topic: str,
    output: str,
    bounded: bool,
    parallelism: int,
    checkpoints: str,
    env: dict[str, str],
    log: Path,
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "streamjob.worker.cli",
        "run",
        f"{Path(__file__).resolve()}:build",
        bootstrap,
        topic,
        output,
        "1" if bounded else "0",
        "--name",
        f"bench-{uuid.uuid4().hex[:6]}",
        "--rest-port",
        "0",
        "--parallelism",
        str(parallelism),
        "--checkpoint-dir",
        checkpoints,
    ]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, start_new_session=True
    )


def _wait_line(log: Path, pattern: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and re.search(pattern, log.read_text()):
            return time.monotonic()
        time.sleep(0.05)
    return None


def main(argv: list[str] | None = None) -> int:
    """Runs both phases and prints the figures as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.kafka_e2e", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000, help="records of the throughput phase")
    p.add_argument("--rate", type=float, default=5_000, help="records/s produced in the latency phase")
    p.add_argument("--seconds", type=float, default=20, help="length of the latency phase")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args(argv)

    from streamjob.worker.storage.stores import open_store
    from tests.support.kafka import KafkaBroker
    from tests.support.s3server import SeaweedServer

    work = Path(tempfile.mkdtemp(prefix="streamjob-bench-kafka-"))
    s3 = SeaweedServer(work / "s3")
    broker = KafkaBroker(work / "kafka")
    s3.start()
    broker.start()
    os.environ.update(s3.endpoint().env())
    env = dict(os.environ)
    base = f"s3://{s3.endpoint().bucket}/bench-{uuid.uuid4().hex[:6]}"
    results: dict[str, Any] = {
        "parallelism": args.parallelism,
        "partitions": args.partitions,
        "checkpoint_interval_ms": 1000,
    }
    try:
        # phase 1: throughput over a preloaded topic
        topic = broker.create_topic("bench-throughput", args.partitions)
        _produce(broker.bootstrap, topic, 0, args.records, None, {})
        log = work / "throughput.log"
        job = _job(broker.bootstrap, topic, f"{base}/throughput", True, args.parallelism, f"{base}/chk1", env, log)
        started = _wait_line(log, r"attempt 0 running", 120)
        job.wait(1800)
        ended = time.monotonic()
        if job.returncode != 0 or started is None:
            raise RuntimeError(f"the throughput job failed; log {log}")
        rows = sum(
            len(open_store(f"{base}/throughput").get(i.key).splitlines())
            for i in open_store(f"{base}/throughput").list("")
        )
        results["throughput_records"] = args.records
        results["throughput_committed_rows"] = rows
        results["throughput_seconds"] = round(ended - started, 2)
        results["throughput_records_per_s"] = round(args.records / (ended - started))

        # phase 2: latency from arrival in Kafka to commit on S3, at a steady rate
        topic = broker.create_topic("bench-latency", args.partitions)
        output = f"{base}/latency"
        log = work / "latency.log"
        job = _job(broker.bootstrap, topic, output, False, args.parallelism, f"{base}/chk2", env, log)
        if _wait_line(log, r"checkpoint \d+ completed", 120) is None:
            raise RuntimeError(f"the latency job did not start; log {log}")
        produced: dict[int, float] = {}
        committed: dict[int, float] = {}
        count = int(args.rate * args.seconds)
        stop = threading.Event()

        def watch() -> None:
            store = open_store(output)
            seen: set[str] = set()
            while not stop.is_set():
                now = time.time()
                for info in store.list(""):
                    if info.key not in seen:
                        seen.add(info.key)
                        for line in store.get(info.key).decode().splitlines():
                            committed.setdefault(int(json.loads(line)[3]), now)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _produce(broker.bootstrap, topic, 0, count, args.rate, produced)
        deadline = time.monotonic() + 60
        while len(committed) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        watcher.join(10)
        os.killpg(job.pid, 15)
        job.wait(60)
        latencies = [committed[i] - produced[i] for i in produced if i in committed]
        results["latency_records"] = count
        results["latency_committed"] = len(latencies)
        results["latency_rate_per_s"] = args.rate
        results["latency_p50_ms"] = round(_percentile(latencies, 0.50) * 1000)
        results["latency_p99_ms"] = round(_percentile(latencies, 0.99) * 1000)
    finally:
        broker.stop()
        s3.stop()
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
