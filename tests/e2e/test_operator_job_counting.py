"""The job the e2e tests' pods run (no tests here): ``/…/test_operator_job_counting.py:counting_job``.

A throttled generator of the numbers ``0..count-1``, keyed by ``i % 4``, a running sum per key in
keyed state, and an exactly-once file sink. It imports only the public runtime API, so the pods'
processes need nothing else on their path. ``check_exact`` verifies the committed output.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

KEYS = 4
JOB_FILE = Path(__file__).resolve()
ENTRYPOINT = f"{JOB_FILE}:counting_job"


def _identity(i: int) -> int:
    return i


def _key(i: int) -> int:
    return i % KEYS


def _row_key(row: dict[str, int]) -> int:
    return row["k"]


def counting_job(argv: list[str]) -> Any:
    """``argv`` (the StreamJob's ``args``): output URI, count, records per second, checkpoint interval ms, extra, stamp.

    ``extra`` = ``1`` adds a stateful pass-through operator (uid ``extra``) before the sink: its
    snapshots hold state that the job without it cannot restore unless non-restored state is allowed.
    ``stamp`` = ``1`` adds the wall-clock time each row was made (``t``), to measure processing gaps.
    """
    defaults = ["file:///tmp/streamjob-counting", "4000", "400", "300", "0", "0"]
    out_uri, count, rate, interval_ms, extra, stamp = (list(argv) + defaults[len(argv) :])[:6]
    stamped = stamp == "1"
    from streamjob.worker.api import RichMapFunction, StreamExecutionEnvironment, ValueStateDescriptor
    from streamjob.worker.api.file_sink import FileSink

    class RunningSum(RichMapFunction[int, dict[str, int]]):
        def open(self, runtime_context: Any) -> None:
            self.total = runtime_context.get_state(ValueStateDescriptor("total", int, 0))

        def map(self, value: int) -> dict[str, int]:
            total = self.total.value() + value
            self.total.update(total)
            row = {"k": value % KEYS, "i": value, "sum": total}
            if stamped:
                row["t"] = time.time()  # type: ignore[assignment]
            return row

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(int(interval_ms))
    numbers = env.from_generator(_identity, count=int(count), records_per_second=float(rate)).uid("numbers")

    class SeenCount(RichMapFunction[dict[str, int], dict[str, int]]):
        def open(self, runtime_context: Any) -> None:
            self.seen = runtime_context.get_state(ValueStateDescriptor("seen", int, 0))

        def map(self, value: dict[str, int]) -> dict[str, int]:
            self.seen.update(self.seen.value() + 1)
            return value

    sums = numbers.key_by(_key).map(RunningSum()).uid("sums")
    if extra == "1":
        sums = sums.key_by(_row_key).map(SeenCount()).uid("extra")
    sums.add_sink(FileSink(out_uri)).uid("out")
    return env


def pauses_above(out_dir: Path, seconds: float) -> list[float]:
    """Every pause between consecutive rows made longer than ``seconds``, in time order."""
    times = sorted(json.loads(line)["t"] for part in out_dir.rglob("part-*") for line in part.read_text().splitlines())
    return [b - a for a, b in itertools.pairwise(times) if b - a > seconds]


def check_exact(out_dir: Path, count: int) -> None:
    """Every number exactly once, and per key a final sum equal to the sum of its numbers."""
    seen: dict[int, int] = defaultdict(int)
    best: dict[int, int] = defaultdict(int)
    for part in out_dir.rglob("part-*"):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            seen[row["i"]] += 1
            best[row["k"]] = max(best[row["k"]], row["sum"])
    duplicates = {i: n for i, n in seen.items() if n != 1}
    assert not duplicates, f"records seen more than once: {list(duplicates.items())[:10]}"
    missing = set(range(count)) - set(seen)
    assert not missing, f"{len(missing)} records missing, e.g. {sorted(missing)[:10]}"
    expected = {k: sum(i for i in range(count) if i % KEYS == k) for k in range(KEYS)}
    assert dict(best) == expected, "a key's final sum is wrong: keyed state was lost or replayed"
