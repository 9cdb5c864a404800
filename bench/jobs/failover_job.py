"""The failover benchmark's job: a steady-rate keyed running sum into an exactly-once FileSink, with timestamps.

Run by the StreamJob operator on the test bed (``bench/failover.py``); its arguments are the
StreamJob's ``args``: ``OUT_URI STAMPS_DIR COUNT RATE KEYS INTERVAL_MS [TAG]``.

Pipeline: ``from_generator`` of ``0..COUNT-1`` throttled to RATE records/s → ``key_by(i % KEYS)``
→ a running sum per key in keyed state (``sums``) → ``Stamp`` → ``FileSink`` (committed with each
checkpoint). ``Stamp`` is chained to the running sum (same task), and writes, per attempt and
subtask, ``STAMPS_DIR/a<attempt>-s<subtask>.json`` with the wall-clock time (``time.time()``, one
clock for every process of the test bed) at which the task opened — after its keyed state was
restored, since a task restores every operator of its chain before the first ``open`` returns —
and at which the first record went through it. The benchmark's "processing again" moment is the
``first`` stamp of the new attempt: measured in the record path itself, not by polling status.
``TAG`` is ignored by the pipeline: changing it is a spec change that needs an upgrade but keeps
the job graph (and so the savepoint) compatible.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from streamjob.worker.api import RichMapFunction, StreamExecutionEnvironment, ValueStateDescriptor
from streamjob.worker.api.file_sink import FileSink

DEFAULTS = ["file:///tmp/streamjob-failover-out", "/tmp/streamjob-failover-stamps", "20000", "500", "1000", "1000"]


def _identity(i: int) -> int:
    return i


class _Key:
    """``i % keys`` as a picklable callable (the key selector must be the same in every process)."""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def __call__(self, i: int) -> int:
        return i % self.keys


class RunningSum(RichMapFunction[int, dict[str, int]]):
    """Per key: the sum of the numbers seen so far (keyed state, so it is checkpointed and restored)."""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def open(self, runtime_context: Any) -> None:
        self.total = runtime_context.get_state(ValueStateDescriptor("total", int, 0))

    def map(self, value: int) -> dict[str, int]:
        total = self.total.value() + value
        self.total.update(total)
        return {"k": value % self.keys, "i": value, "sum": total}


class Stamp(RichMapFunction[dict[str, int], dict[str, int]]):
    """Passes records through; writes when the task opened and when its first record arrived."""

    def __init__(self, stamps_dir: str) -> None:
        self.stamps_dir = stamps_dir

    def open(self, runtime_context: Any) -> None:
        self.stamp: dict[str, Any] = {
            "open": time.time(),
            "attempt": runtime_context.get_attempt_number(),
            "subtask": runtime_context.get_index_of_this_subtask(),
            "pid": os.getpid(),
            "pod": os.environ.get("POD_NAME", ""),
        }
        self.seen = False
        self._write()

    def _write(self) -> None:
        folder = Path(self.stamps_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"a{self.stamp['attempt']}-s{self.stamp['subtask']}.json"
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.write_text(json.dumps(self.stamp))
        tmp.replace(folder / name)

    def map(self, value: dict[str, int]) -> dict[str, int]:
        if not self.seen:
            self.seen = True
            self.stamp["first"] = time.time()
            self.stamp["first_i"] = value["i"]
            self._write()
        return value


def build(argv: list[str]) -> Any:
    """The pipeline (see the module docstring for the arguments)."""
    out_uri, stamps_dir, count, rate, keys, interval_ms = (list(argv) + DEFAULTS[len(argv) :])[:6]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(int(interval_ms))
    numbers = env.from_generator(_identity, count=int(count), records_per_second=float(rate)).uid("numbers")
    sums = numbers.key_by(_Key(int(keys))).map(RunningSum(int(keys))).uid("sums")
    stamped = sums.map(Stamp(stamps_dir)).uid("stamp")
    stamped.add_sink(FileSink(out_uri)).uid("out")
    return env


def check_exact(out_dir: Path, count: int, keys: int) -> str | None:
    """None when the committed output holds every number once and every key's final sum; else what is wrong."""
    seen: dict[int, int] = {}
    best: dict[int, int] = {}
    for part in out_dir.rglob("part-*"):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            seen[row["i"]] = seen.get(row["i"], 0) + 1
            best[row["k"]] = max(best.get(row["k"], 0), row["sum"])
    duplicates = [i for i, n in seen.items() if n != 1]
    if duplicates:
        return f"{len(duplicates)} records committed more than once, e.g. {sorted(duplicates)[:5]}"
    missing = count - len(seen)
    if missing:
        return f"{missing} of {count} records missing from the committed output"
    expected = {k: sum(range(k, count, keys)) for k in range(min(keys, count))}
    wrong = [k for k, total in expected.items() if best.get(k, 0) != total]
    if wrong:
        return f"the final sum of {len(wrong)} keys is wrong (keyed state lost or replayed), e.g. key {wrong[0]}"
    return None
