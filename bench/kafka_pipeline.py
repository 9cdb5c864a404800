"""Kafka benchmark: Kafka -> keyed (count, sum) -> KafkaSink, exactly-once and at-least-once, p=1/p=2.

Run: ``.venv/bin/python -m bench.kafka_pipeline [--records 1000000] [--partitions 2]
[--modes exactly-once,at-least-once] [--parallelism 1,2] [--rounds 1] [--base REV]
[--latency-rate 20000 --latency-seconds 5]`` (needs Java and Maven for the broker, like the Kafka
tests; it starts its own broker on 127.0.0.1 and stops it).

Per case (mode x parallelism, alternating base/new code when ``--base`` names a git revision, whose
``worker/`` and ``operator/`` are extracted and run from a temporary package root):

- **throughput**: ``--records`` lines preloaded into a ``--partitions`` topic; the job reads them
  (bounded), keeps each key's (count, sum) and writes every update to an output topic, checkpointing
  every second. records/s = records / (job process start -> the last output row visible to a
  ``read_committed`` consumer), i.e. the whole process;
- checkpoint size (mean) and p50 duration, parsed from the job's ``checkpoint N completed`` lines;
- peak RSS: the largest sum of the RSS of the job's processes, sampled every 100 ms;
- CPU: the job's processes' CPU seconds (and per record) and the broker's during the case: unlike
  records/s, CPU per record hardly depends on what else runs on a shared machine;
- **visibility latency**: an unbounded job while lines are produced at ``--latency-rate`` for
  ``--latency-seconds``; latency = output row visible read_committed - input produced (p50/p99).

Writes ``bench/results/kafka-<rev>.json`` and prints it. The machine's load average is recorded:
figures on a shared machine are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

KEYS = 1000
REPO = Path(__file__).resolve().parent.parent


def parse(line: str) -> tuple[int, int, int, int]:
    """An input line (an integer) -> (key, count 1, value, the line's number)."""
    n = int(line)
    return (n % KEYS, 1, n % 100, n)


def add(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(count, sum) per key; the last line's number rides along for the latency measurement."""
    return (a[0], a[1] + b[1], a[2] + b[2], b[3])


def csv_row(r: tuple[int, int, int, int]) -> bytes:
    """The output row ``key,count,sum,n``."""
    return b"%d,%d,%d,%d" % r


def build(args: list[str]) -> Any:
    """The pipeline: ``bootstrap in_topic out_topic semantic bounded(0|1) [slot_group]``.

    ``slot_group``: the slot sharing group of the keyed ``reduce`` and the sink (``--slot-groups``), which then
    run in slot processes of their own beside the source and ``parse``.

    The user functions are what a user writes, and cost per record on the loaded 2-core machine
    (timeit): ``parse`` ~0.7 us (the first version called ``int(line)`` three times: ~1.2 us),
    ``csv_row`` ~0.6 us (an f-string with four subscripts then ``.encode()``: ~1.0 us), ``add``
    ~0.2 us, the key selector ~0.01 us. Both sides of an A/B run use these same functions.
    """
    from streamjob.worker.api import StreamExecutionEnvironment
    from streamjob.worker.connectors.kafka import KafkaSink, KafkaSource

    bootstrap, source_topic, out_topic, semantic, bounded = args[0], args[1], args[2], args[3], args[4] == "1"
    group = args[5] if len(args) > 5 else None
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(1000)
    source = KafkaSource(source_topic, bootstrap, f"bench-{out_topic}", bounded=bounded)
    sink = KafkaSink(out_topic, bootstrap, semantic, transactional_id_prefix=f"bench-{out_topic}", serializer=csv_row)
    totals = env.from_source(source, "Kafka").uid("kafka").map(parse).uid("parse").key_by(lambda r: r[0]).reduce(add)
    totals = totals.uid("totals")
    if group:
        totals = totals.slot_sharing_group(group)
    totals.add_sink(sink).uid("out")
    return env


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _produce(
    bootstrap: str, topic: str, start: int, count: int, rate: float | None, produced: dict[int, float]
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    began = time.monotonic()
    for n in range(count):
        i = start + n
        if rate is not None and n % 100 == 0:
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(topic, str(i).encode())
                break
            except BufferError:
                producer.poll(0.01)
        if rate is not None:
            produced[i] = time.time()
    producer.flush(120)


class Watcher(threading.Thread):
    """Counts the output rows a read_committed consumer sees; when each input index became visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watch-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # without it librdkafka pauses a partition's fetches for 1 s whenever 100k records are
                # queued: the watcher, not the job, set the pace (1M rows took ~4 s more to be seen)
                "fetch.queue.backoff.ms": 10,
            }
        )
        self.consumer.subscribe([topic])
        self.rows = 0
        self.visible: dict[int, float] = {}
        self.track = False
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            messages = self.consumer.consume(10_000, 0.05)
            now = time.time()
            for msg in messages:
                if msg.error() is None:
                    self.rows += 1
                    if self.track:
                        self.visible.setdefault(int((msg.value() or b"0").rsplit(b",", 1)[1]), now)
        self.consumer.close()


def _rss_of_group(pgid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def _run_case(
    python_env: dict[str, str],
    broker: Any,
    records: int,
    partitions: int,
    semantic: str,
    parallelism: int,
    work: Path,
    group: str = "",
    reference: bool = False,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    source = broker.create_topic(f"in-{tag}", partitions)
    out = broker.create_topic(f"out-{tag}", partitions)
    _produce(broker.bootstrap, source, 0, records, None, {})
    watcher = Watcher(broker.bootstrap, out)
    watcher.start()
    log = work / f"{tag}.log"
    cpu_before = _children_cpu_s()
    broker_before = _cpu_of(broker.proc.pid)
    started = time.monotonic()
    if reference:
        ref = str(REPO / "bench" / "kafka_ref.py")
        cmd = [sys.executable, ref, broker.bootstrap, source, out, semantic, "all", str(parallelism)]
    else:
        cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--rest-port", "0"]
        cmd += ["--parallelism", str(parallelism), "--checkpoint-dir", (work / f"chk-{tag}").as_uri()]
        cmd += [f"{Path(__file__).resolve()}:build", broker.bootstrap, source, out, semantic, "1"]
        cmd += [group] if group else []
    job = subprocess.Popen(
        cmd, env=python_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=work
    )
    peak = 0
    deadline = started + 1800
    while watcher.rows < records and time.monotonic() < deadline:
        peak = max(peak, _rss_of_group(job.pid))
        if job.poll() is not None and job.returncode != 0:
            raise RuntimeError(f"the job failed ({job.returncode}); log {log}")
        time.sleep(0.1)
    ended = time.monotonic()
    watcher.stop.set()
    broker_cpu = _cpu_of(broker.proc.pid) - broker_before
    job.wait(120)
    job_cpu = _children_cpu_s() - cpu_before
    text = log.read_text()
    found = re.findall(r"checkpoint \d+ completed in (\d+) ms \(([\d.]+) (B|KiB|MiB)\)", text)
    scale = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}
    return {
        "semantic": semantic,
        "parallelism": parallelism,
        "slot_group": group or None,
        "rows_visible": watcher.rows,
        "seconds": round(ended - started, 2),
        "records_per_s": round(records / (ended - started)),
        "checkpoints": len(found),
        "checkpoint_p50_ms": statistics.median(int(d) for d, _, _ in found) if found else None,
        "checkpoint_mean_bytes": round(statistics.mean(float(s) * scale[u] for _, s, u in found)) if found else None,
        "peak_rss_mb": round(peak / 2**20),
        "job_cpu_s": round(job_cpu, 2),
        "job_cpu_us_per_record": round(job_cpu / records * 1e6, 2),
        "broker_cpu_s": round(broker_cpu, 2),
    }


def _children_cpu_s() -> float:
    """CPU seconds of this process's waited-for descendants (the job's CLI and its slot processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    """CPU seconds of a running process (the broker's share of a case)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latency(
    python_env: dict[str, str], broker: Any, rate: float, seconds: float, semantic: str, work: Path
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    source = broker.create_topic(f"lin-{tag}", 2)
    out = broker.create_topic(f"lout-{tag}", 2)
    watcher = Watcher(broker.bootstrap, out)
    watcher.track = True
    watcher.start()
    log = work / f"{tag}.log"
    cmd = [sys.executable, "-m", "streamjob.worker.cli", "run", "--rest-port", "0", "--parallelism", "1"]
    cmd += ["--checkpoint-dir", (work / f"chk-{tag}").as_uri(), f"{Path(__file__).resolve()}:build"]
    cmd += [broker.bootstrap, source, out, semantic, "0"]
    job = subprocess.Popen(
        cmd, env=python_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=work
    )
    try:
        deadline = time.monotonic() + 120
        while "checkpoint 1 completed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        produced: dict[int, float] = {}
        count = int(rate * seconds)
        _produce(broker.bootstrap, source, 0, count, rate, produced)
        deadline = time.monotonic() + 60
        while len(watcher.visible) < count and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        watcher.stop.set()
        os.killpg(job.pid, 15)
        job.wait(60)
    latencies = [watcher.visible[i] - t for i, t in produced.items() if i in watcher.visible]
    return {
        "semantic": semantic,
        "rate_per_s": rate,
        "visible": len(latencies),
        "produced": len(produced),
        "p50_ms": round(_percentile(latencies, 0.5) * 1000),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000),
    }


def _side_env(base: str | None, tmp: Path) -> tuple[str, dict[str, str]]:
    """(revision label, environment) of the code to run: the working tree, or ``base`` extracted."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if base is None:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        return f"new@{rev.strip()}", env
    root = tmp / f"base-{uuid.uuid4().hex[:6]}"
    tree = root / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", base, "worker", "operator"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (root / "pkg" / "streamjob").mkdir(parents=True)
    (root / "pkg" / "streamjob" / "worker").symlink_to(tree / "worker", target_is_directory=True)
    (root / "pkg" / "streamjob" / "operator").symlink_to(tree / "operator", target_is_directory=True)
    env["PYTHONPATH"] = str(root / "pkg")
    return f"base@{base}", env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kafka_pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--modes", default="exactly-once,at-least-once")
    p.add_argument("--parallelism", default="1,2")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--slot-groups",
        default="",
        help="comma-separated slot sharing groups for the keyed reduce and the sink, each a case of its own; "
        "an empty item: none (e.g. ',keyed' measures both)",
    )
    p.add_argument("--base", default=None, help="a git revision to measure alternately with the working tree")
    p.add_argument(
        "--reference",
        action="store_true",
        help="also run the same work as a plain Python loop per case (bench/kafka_ref.py): the floor",
    )
    p.add_argument("--latency-rate", type=float, default=20_000)
    p.add_argument("--latency-seconds", type=float, default=5)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.support.kafka import KafkaBroker

    work = Path(tempfile.mkdtemp(prefix="streamjob-bench-kafka-"))
    broker = KafkaBroker(work / "kafka")
    broker.start()
    sides = [_side_env(None, work)] + ([_side_env(args.base, work)] if args.base else [])
    results: dict[str, Any] = {"records": args.records, "partitions": args.partitions, "cases": [], "latency": []}
    results["loadavg_start"] = os.getloadavg()
    try:
        for _ in range(args.rounds):
            for semantic in args.modes.split(","):
                for parallelism in map(int, args.parallelism.split(",")):
                    for label, env in sides:
                        for group in args.slot_groups.split(","):
                            case = _run_case(
                                env, broker, args.records, args.partitions, semantic, parallelism, work, group
                            )
                            case["code"] = label
                            case["loadavg"] = os.getloadavg()[0]
                            print(json.dumps(case), flush=True)
                            results["cases"].append(case)
                    if args.reference:
                        case = _run_case(
                            sides[0][1],
                            broker,
                            args.records,
                            args.partitions,
                            semantic,
                            parallelism,
                            work,
                            reference=True,
                        )
                        case["code"] = "plain-loop"
                        case["loadavg"] = os.getloadavg()[0]
                        print(json.dumps(case), flush=True)
                        results["cases"].append(case)
        if args.latency_seconds > 0:
            for semantic in args.modes.split(","):
                for label, env in sides:
                    found = _latency(env, broker, args.latency_rate, args.latency_seconds, semantic, work)
                    found["code"] = label
                    print(json.dumps(found), flush=True)
                    results["latency"].append(found)
    finally:
        broker.stop()
    results["loadavg_end"] = os.getloadavg()
    out = REPO / "bench" / "results" / f"kafka-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
