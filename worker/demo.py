"""``streamjob demo``: the embedded sample job, run locally, with a worker killed mid-stream.

A generator emits payments of 50 users at a steady rate; a keyed reduce keeps each user's
running balance and count; an exactly-once file sink commits the outputs with each checkpoint.
After the third checkpoint the demo SIGKILLs one worker process; the job recovers from the
latest checkpoint and runs to the end, and the demo then checks the committed output: every
user's counts run 1..n exactly once and the last balance is the exact total.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.file_sink import FileSink

USERS = 50
RECORDS = 24_000
RATE = 4_000


def payment(i: int) -> tuple[str, int, int]:
    """Payment ``i``: (user, count 1, amount in cents), deterministic."""
    return (f"user{i % USERS}", 1, (i * 7919) % 10_000)


def add(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, int, int]:
    """Running count and balance of one user."""
    return (a[0], a[1] + b[1], a[2] + b[2])


def build(args: list[str]) -> StreamExecutionEnvironment:
    """The demo pipeline; ``args[0]`` is the output directory URI."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(500)
    env.from_generator(payment, count=RECORDS, records_per_second=RATE).uid("payments").key_by(lambda p: p[0]).reduce(
        add
    ).uid("balances").add_sink(FileSink(args[0])).uid("committed-balances")
    return env


def verify(output_dir: Path) -> tuple[bool, str]:
    """Checks the committed output for loss and duplicates."""
    expected_total: dict[str, int] = defaultdict(int)
    expected_count: dict[str, int] = defaultdict(int)
    for i in range(RECORDS):
        user, _, amount = payment(i)
        expected_total[user] += amount
        expected_count[user] += 1
    counts: dict[str, list[int]] = defaultdict(list)
    final: dict[str, int] = {}
    for path in sorted(output_dir.glob("part-*")):
        for line in path.read_text().splitlines():
            user, count, balance = json.loads(line)
            counts[user].append(count)
            if count == expected_count[user]:
                final[user] = balance
    for user, n in expected_count.items():
        seen = sorted(counts.get(user, []))
        if seen != list(range(1, n + 1)):
            missing = n - len(set(seen))
            dupes = len(seen) - len(set(seen))
            return False, f"{user}: {missing} outputs missing, {dupes} duplicated"
        if final.get(user) != expected_total[user]:
            return False, f"{user}: final balance {final.get(user)} != {expected_total[user]}"
    total = sum(len(v) for v in counts.values())
    return True, f"{total:,} committed outputs, every user's counts 1..n exactly once, balances exact"


def run_demo(checkpoint_uri: str | None = None) -> int:
    """Runs the demo; 0 when the output is exact."""
    from streamjob.worker.config import JobConfig
    from streamjob.worker.local import Progress, run_local

    work = Path(tempfile.mkdtemp(prefix="streamjob-demo-"))
    output = work / "output"
    output.mkdir()
    checkpoints = checkpoint_uri or (work / "checkpoints").as_uri()

    class DemoProgress(Progress):
        killed = False

        def event(self, kind: str, data: dict[str, Any]) -> None:
            super().event(kind, data)
            if kind == "checkpoint" and data["id"] >= 3 and not self.killed and self.launcher is not None:
                pids = self.launcher.pids()
                if len(pids) > 1:
                    self.killed = True
                    self.line(f"demo: killing worker process {pids[1]} with SIGKILL")
                    os.kill(pids[1], signal.SIGKILL)

    progress = DemoProgress()
    progress.line(
        f"demo: {RECORDS:,} payments of {USERS} users at {RATE:,}/s, parallelism 2, a checkpoint every "
        f"500 ms; committed output in {output}"
    )
    config = JobConfig(
        name="demo",
        entrypoint="streamjob.worker.demo:build",
        args=[output.as_uri()],
        checkpoints_uri=checkpoints,
        rest_port=0,
    )
    code = run_local(config, progress=progress, work_dir=work)
    if code != 0:
        return code
    ok, message = verify(output)
    progress.line(("demo OK: " if ok else "demo FAILED: ") + message)
    return 0 if ok else 1
