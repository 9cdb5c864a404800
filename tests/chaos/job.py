"""The chaos campaign's job, run by the operator's pods: ``/…/tests/chaos/job.py:build``.

``args``: ``OUT_URI GATE_FILE COUNT RATE KEYS INTERVAL_MS [TAG]``. A gated source emits the numbers
``0..COUNT-1`` at most RATE per second and never past the number written in GATE_FILE (the
campaign raises it steadily while the faults run, so the job is busy whenever one lands, and ends
only when the campaign releases everything); ``key_by(i % KEYS)``; per key a running count and sum in keyed state; an
exactly-once ``FileSink`` (S3). Each output row is ``{"k", "i", "n", "s"}``: the key, the number,
the key's count and sum after it. So the committed output is fully known: every number once, and
per key the counts 1..m with each sum the previous one plus the number (``checker`` verifies it).
``TAG`` is ignored by the pipeline: changing it is an upgrade that keeps the graph compatible.
Imports only the public runtime API (the pods have nothing else on their path).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamjob.worker.api import RichMapFunction, StreamExecutionEnvironment, ValueStateDescriptor
from streamjob.worker.api.file_sink import FileSink
from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext

CHUNK = 50  # numbers per split: many small splits keep every subtask busy, also after a rescale


class _GatedReader(SourceReader):
    """Emits its splits in ascending order, throttled, never a number at or past the gate."""

    def __init__(self, splits: list[tuple[int, int]], gate_file: str, count: int, rate: float) -> None:
        self._splits = sorted([a, b] for a, b in splits if a < b)
        self._gate_file = Path(gate_file)
        self._count = count
        self._rate = rate
        self._gate = 0
        self._gate_read = 0.0
        self._started = time.monotonic()
        self._emitted = 0

    def _read_gate(self) -> int:
        now = time.monotonic()
        if now - self._gate_read >= 0.1:
            self._gate_read = now
            try:
                self._gate = min(self._count, int(self._gate_file.read_text().strip() or 0))
            except (OSError, ValueError):
                pass  # being replaced: keep the last value
        return self._gate

    def poll(self, max_records: int) -> list[Any] | None:
        gate = self._read_gate()
        if not self._splits:
            # Finish only once the campaign released every number: a source that ended early would
            # leave its task waiting on the others for the rest of the run.
            return None if gate >= self._count else []
        allowed = int((time.monotonic() - self._started) * self._rate) - self._emitted
        split = self._splits[0]
        end = min(split[1], gate, split[0] + min(max_records, allowed))
        if end <= split[0]:
            return []
        out = list(range(split[0], end))
        split[0] = end
        if end >= split[1]:
            self._splits.pop(0)
        self._emitted += len(out)
        return out

    def snapshot(self) -> list[Any]:
        return [(a, b) for a, b in self._splits]

    def next_poll_delay_s(self) -> float:
        return 0.01


class GatedSource(Source):
    """``0..count-1`` in splits of ``CHUNK`` dealt round-robin to the subtasks, released by a gate file."""

    def __init__(self, count: int, gate_file: str, records_per_second: float) -> None:
        self.count = count
        self.gate_file = gate_file
        self.records_per_second = records_per_second

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        rate = self.records_per_second / ctx.parallelism
        if restored is not None:
            splits = [(int(a), int(b)) for a, b in restored]
        else:
            chunks = range(ctx.subtask_index, (self.count + CHUNK - 1) // CHUNK, ctx.parallelism)
            splits = [(c * CHUNK, min(self.count, (c + 1) * CHUNK)) for c in chunks]
        return _GatedReader(splits, self.gate_file, self.count, rate)


class _Key:
    """``i % keys`` as a picklable callable (the same in every process)."""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def __call__(self, i: int) -> int:
        return i % self.keys


class RunningCount(RichMapFunction[int, dict[str, int]]):
    """Per key: how many numbers and their sum so far (keyed state: checkpointed and restored)."""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def open(self, runtime_context: Any) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count", int, 0))
        self.total = runtime_context.get_state(ValueStateDescriptor("total", int, 0))

    def map(self, value: int) -> dict[str, int]:
        n = self.count.value() + 1
        s = self.total.value() + value
        self.count.update(n)
        self.total.update(s)
        return {"k": value % self.keys, "i": value, "n": n, "s": s}


def build(argv: list[str]) -> Any:
    """The pipeline (arguments in the module docstring)."""
    out_uri, gate_file, count, rate, keys, interval_ms = argv[:6]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(int(interval_ms))
    numbers = env.from_source(GatedSource(int(count), gate_file, float(rate)), "Gated Source").uid("numbers")
    counts = numbers.key_by(_Key(int(keys))).map(RunningCount(int(keys))).uid("counts")
    counts.add_sink(FileSink(out_uri)).uid("out")
    return env
