"""``userfn_ref``: the user-function job's work as a plain Python loop, the floor for that job.

One process, no streamjob: for each ``i`` the same small callbacks the job runs — the event
generator (``('k%d' % (i % keys), 1)``), the map, the key selector, the process function on a
dict of ``(sum, count)`` per key emitting ``(key, sum, count)`` through a collector callback, a
counting sink. What the runtime adds on top (batching, serialisation between slots, state
backend, checkpoint barriers, process start-up) is the gap between this and ``userfn_p1``.
Run by ``bench.__main__`` like ``stages``; every run checks the emitted sums.

It also runs the loop in two processes at once, each over half the events (``parallel_runs``): on a
2-core machine that is the most any implementation of this work in Python can reach at p=2, with no
exchange between the processes at all: the ceiling for ``userfn_p2``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import expected_value_total

DESCRIPTION = (
    "the user-function job's work (string keys, map, key selector, (sum, count) per key in a dict, "
    "a per-record sink) as a plain Python loop in one process: the floor for userfn_p1"
)
RECORDS, QUICK_RECORDS, KEYS, RUNS = 2_000_000, 50_000, 10_000, 3


def loop(records: int, keys: int) -> tuple[int, int]:
    """Runs the pipeline's callbacks over ``records`` events; (records counted, sum of the emitted sums)."""

    def generate(i: int) -> tuple[str, int]:
        return ("k%d" % (i % keys), 1)  # noqa: UP031 - the job's key format

    def parse(e: tuple[str, int]) -> tuple[str, int]:
        return (e[0], e[1])

    def key_of(e: tuple[str, int]) -> str:
        return e[0]

    state: dict[str, tuple[int, int]] = {}
    counted = [0, 0]

    def sink(value: tuple[str, int, int]) -> None:
        counted[0] += 1
        counted[1] += value[1]

    def process(value: tuple[str, int], key: str, out: Callable[[tuple[str, int, int]], None]) -> None:
        current = state.get(key)
        total, count = (value[1], 1) if current is None else (current[0] + value[1], current[1] + 1)
        state[key] = (total, count)
        out((value[0], total, count))

    for i in range(records):
        event = parse(generate(i))
        process(event, key_of(event), sink)
    return counted[0], counted[1]


def _parallel(records: int, keys: int, processes: int) -> tuple[float, bool]:
    """(wall seconds, results right) of ``processes`` forked loops over ``records // processes`` events each."""
    share = records // processes
    began = time.perf_counter()
    pids = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: its exit status says whether its sums were right
            count, total = loop(share, keys)
            os._exit(0 if count == share and total == expected_value_total(share, keys) else 1)
        pids.append(pid)
    right = all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in pids)
    return time.perf_counter() - began, right


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Times ``loop`` (wall clock and process CPU); the median of the runs is the summary."""
    records = QUICK_RECORDS if quick else RECORDS
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    for index in range(1 if quick else RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        count, total = loop(records, KEYS)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if count != records or total != expected_value_total(records, KEYS):
            errors.append(
                f"userfn_ref: WRONG RESULTS: {count:,} records and sums {total:,}, expected {records:,} "
                f"and {expected_value_total(records, KEYS):,}"
            )
            continue
        runs.append(
            {
                "records": records,
                "wall_s": round(wall, 4),
                "events_per_s": round(records / wall),
                "cpu_ns_per_event": round(cpu * 1e9 / records, 1),
                "verified": True,
            }
        )
        log(
            f"  userfn_ref run {index + 1}: {runs[-1]['events_per_s']:,} events/s, "
            f"{runs[-1]['cpu_ns_per_event']} CPU ns/event"
        )
    parallel_runs: list[dict[str, Any]] = []
    for index in range(1 if quick else RUNS):
        wall, right = _parallel(records, KEYS, 2)
        if not right:
            errors.append("userfn_ref: WRONG RESULTS in a process of the two-process run")
            continue
        parallel_runs.append({"records": records, "processes": 2, "wall_s": round(wall, 4)})
        parallel_runs[-1]["events_per_s"] = round(records / wall)
        log(f"  userfn_ref two processes run {index + 1}: {parallel_runs[-1]['events_per_s']:,} events/s")
    summary: dict[str, Any] | None = None
    if runs:
        summary = {key: statistics.median(r[key] for r in runs) for key in ("events_per_s", "cpu_ns_per_event")}
        summary["wall_s"] = statistics.median(r["wall_s"] for r in runs)
        if parallel_runs:
            summary["two_processes_events_per_s"] = statistics.median(r["events_per_s"] for r in parallel_runs)
    return {
        "description": DESCRIPTION,
        "records": records,
        "keys": KEYS,
        "runs": runs,
        "parallel_runs": parallel_runs,
        "errors": errors,
        "summary": summary,
    }
