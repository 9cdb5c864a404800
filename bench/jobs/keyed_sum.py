"""The benchmark job: a keyed running sum, ``(key, 1)`` events summed per key.

Pipeline (the issue's benchmark): ``from_generator`` → ``key_by(key)`` → ``sum(1)`` → a sink that
only counts. The sink of every subtask writes a small JSON report when it closes: the wall-clock
time of its first and last batch, the records it received, and its process's peak RSS (VmHWM), so
that the harness measures from the first record to the last without process start-up. It also
reports the CPU time its process spent in that window (all threads: the slot's source, reduce and
snapshot work), a figure far less disturbed by other load on the machine than wall time.

With ``--sink-delay-us`` the sink sleeps that long per record: a deliberately slow sink for the
backpressure scenario (the harness samples the slot processes' RSS over time). With ``--verify``
it adds up the sum field of every output; key k's outputs are 1, 2, …, n_k, so the total is
known in advance and checks every running sum the job emitted.

Run by the harness as ``streamjob run bench/jobs/keyed_sum.py -- --records N --keys K --out DIR``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import streamjob.worker
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.functions import CheckpointListener, RichFunction
from streamjob.worker.api.sinks import SinkFunction

_CPU_EVERY_S = 0.05
_GC_STATS: dict[str, list[float]] = {}
_GC_STARTED: list[float] = [0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: collections and seconds per generation (opt-in: ``--gc-stats``)."""
    if phase == "start":
        _GC_STARTED[0] = time.perf_counter()
        return
    entry = _GC_STATS.setdefault(str(info["generation"]), [0.0, 0.0])
    entry[0] += 1
    entry[1] += time.perf_counter() - _GC_STARTED[0]


def _cpu_ticks() -> tuple[int, int]:
    """User and system CPU time of this process in clock ticks (/proc/self/stat); zeros without /proc."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]), int(fields[12])


def _status_number(field: str) -> int:
    """A numeric field of /proc/self/status (VmRSS and VmHWM in kB, context switches); 0 without /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class ReportingSink(RichFunction, SinkFunction, CheckpointListener):
    """Counts records; writes ``sink-<subtask>-<pid>.json`` with timings and peak memory.

    Per batch it reads the wall clock once (0.6 µs on the benchmark machine, where clock reads are
    system calls). The process CPU clock costs ~4 µs there, so it is read only every 50 ms:
    ``cpu_s`` is the CPU time of the process from the first batch to the last reading, during
    which the sink received ``cpu_count`` records.

    The report is written at every completed checkpoint as well as on close: a bounded job ends
    with a final checkpoint taken after the last record, and the slot process may be stopped
    before ``close`` runs.
    """

    def __init__(self, out_dir: str, delay_per_record_s: float, verify: bool = False, timeline: bool = False) -> None:
        self.out_dir = out_dir
        self.timeline: list[tuple[float, int, float]] | None = [] if timeline else None
        self.delay = delay_per_record_s
        self.verify = verify
        self.value_total = 0
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.cpu_count = 0
        self.cpu_at = 0.0
        self._cpu_due = 0.0
        self.subtask = 0

    def open(self, runtime_context: Any) -> None:
        self.subtask = runtime_context.get_index_of_this_subtask()

    def invoke(self, value: Any) -> None:
        self.invoke_batch([value])

    def invoke_batch(self, values: list[Any]) -> None:
        now = time.time()
        self._first_batch(now)
        self.count += len(values)
        if self.verify and values:
            self.value_total += sum(list(zip(*values, strict=True))[1])  # the sum fields, transposed in C
        if self.delay:
            time.sleep(self.delay * len(values))
        self._batch_done(now)

    def _first_batch(self, now: float) -> None:
        if self.first is None:
            self.first = now
            self.cpu_first = time.process_time()
            self._cpu_due = now + _CPU_EVERY_S

    def _batch_done(self, now: float) -> None:
        """Timing of a batch that arrived at ``now`` and has been counted (CPU read every 50 ms)."""
        self.last = now
        if now >= self._cpu_due:
            self.cpu_last = time.process_time()
            self.cpu_count = self.count
            self.cpu_at = now
            self._cpu_due = now + _CPU_EVERY_S
            if self.timeline is not None:
                self.timeline.append((now, self.count, self.cpu_last))

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.timeline is None:  # with a timeline the job ends by stop-with-savepoint: ``close`` writes it
            self._write_report()  # (and a measured checkpoint must not pay for dumping the timeline)

    def close(self) -> None:
        self._write_report()

    def _write_report(self) -> None:
        report = {
            "subtask": self.subtask,
            "pid": os.getpid(),
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "cpu_s": self.cpu_last - self.cpu_first,
            "value_total": self.value_total if self.verify else None,
            "cpu_count": self.cpu_count,
            "cpu_at": self.cpu_at,
            "vm_hwm_kb": _status_number("VmHWM"),
            "vm_rss_kb": _status_number("VmRSS"),
            "voluntary_ctxt_switches": _status_number("voluntary_ctxt_switches"),
            "nonvoluntary_ctxt_switches": _status_number("nonvoluntary_ctxt_switches"),
            "user_sys_ticks": _cpu_ticks(),
            "ticks_per_s": os.sysconf("SC_CLK_TCK"),
            "worker_package": os.path.dirname(streamjob.worker.__file__ or ""),  # which code ran (bench/ab.py)
            "timeline": self.timeline,
            "gc": {gen: {"collections": int(n), "seconds": round(s, 4)} for gen, (n, s) in _GC_STATS.items()},
        }
        path = Path(self.out_dir) / f"sink-{self.subtask}-{os.getpid()}.json"
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(report))
        os.replace(partial, path)


def _event(keys: int) -> Any:
    def event(i: int) -> tuple[int, int]:
        return (i % keys, 1)

    return event


def build(args: list[str]) -> StreamExecutionEnvironment:
    """The pipeline; ``args`` are this module's command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="keyed_sum")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--out", required=True, help="directory for the sinks' reports")
    parser.add_argument("--sink-delay-us", type=float, default=0.0, help="sleep per record in the sink")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="the sink adds up every output's running sum (checked by the harness; ~15 ns/record)",
    )
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: unthrottled)")
    parser.add_argument("--batch-size", type=int, default=None, help="records per network batch")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=None,
        help="experiment: gc.set_threshold(N) in every process that loads the job",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in every process that loads the job (after its imports)",
    )
    parser.add_argument("--gc-stats", action="store_true", help="report garbage collections and their time")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="the report lists (time, records, process CPU s) every 50 ms (bench/cost_windows.py)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="experiment: sys.setswitchinterval(S) in every process that loads the job",
    )
    opts = parser.parse_args(args)
    if opts.gc_stats and _gc_timer not in gc.callbacks:
        gc.callbacks.append(_gc_timer)
    if opts.gc_threshold:
        gc.set_threshold(opts.gc_threshold)
    if opts.gc_freeze:
        gc.freeze()
    if opts.switch_interval:
        sys.setswitchinterval(opts.switch_interval)
    env = StreamExecutionEnvironment.get_execution_environment()
    if opts.batch_size:
        env.set_buffer_size(opts.batch_size)
    events = env.from_generator(_event(opts.keys), count=opts.records, records_per_second=opts.rate).uid("events")
    sums = events.key_by(lambda e: e[0]).sum(1).uid("sums")
    sums.add_sink(ReportingSink(opts.out, opts.sink_delay_us / 1e6, opts.verify, opts.timeline)).uid("counts")
    return env
