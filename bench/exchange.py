"""``python bench/exchange.py``: CPU per record of a p=2 source slot's exchange path, in one process.

The user-function job's records (``('k%d' % (i % 10000), 1)``, built fresh per batch as the generator
does, then the job's map lambda) are partitioned by the job's key selector to two channels: a local
one that takes the batch as it is, and a remote one that encodes and decodes its half with the
runtime's ``RecordCodec``, as the data plane would. Printed: the best of ``--runs`` CPU ns per
record (CPU time, so that other tenants' load counts as little as it can). Without the sockets and
the consumer's work, so it isolates what the partitioner and the codec cost.

Old against new: run the file (``python bench/exchange.py``, from outside the repository root, whose
``operator/`` would shadow the stdlib's) once per side with ``PYTHONPATH`` set to a package root of
that side's ``streamjob/worker`` (as ``bench.ab`` builds them), alternating; it prints the folder it
imported. ``bench/results/exchange-p2.md`` reports such a comparison.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.protocol.events import StreamEvent
from streamjob.worker.runtime import channels
from streamjob.worker.runtime.channels import OutputChannel, RecordWriter
from streamjob.worker.runtime.codec import RecordCodec

KEYS = 10_000
BATCH = 4096


class _Local(OutputChannel):
    """Takes a batch as a local channel does (the consumer's work is not measured)."""

    def _deliver(self, batch: list[Any]) -> None:
        self.credits += 1

    def send_event(self, event: StreamEvent) -> None:
        pass


class _Remote(OutputChannel):
    """Encodes and decodes each batch, as the two ends of a data connection do."""

    def __init__(self, codec: RecordCodec) -> None:
        super().__init__()
        self.codec = codec

    def _deliver(self, batch: list[Any]) -> None:
        self.credits += 1
        self.codec.decode(self.codec.encode(batch))

    def send_event(self, event: StreamEvent) -> None:
        pass


def _drive(coro: Any) -> None:
    """Runs a coroutine that never suspends (the channels always hold a credit)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the writer waited for credit")


def measure(records: int) -> float:
    """CPU ns per record of generating, mapping and partitioning ``records`` (half of them encoded)."""
    writer = RecordWriter([_Local(), _Remote(RecordCodec())], Partitioning.HASH, lambda e: e[0], 128, 0)
    parse = lambda e: (e[0], e[1])  # noqa: E731 - the job's map, a lambda as users write it
    started = time.process_time_ns()
    for start in range(0, records, BATCH):
        batch = [parse(("k%d" % (i % KEYS), 1)) for i in range(start, start + BATCH)]  # noqa: UP031
        _drive(writer.emit(batch))
    return (time.process_time_ns() - started) / records


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/exchange.py", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    gc.set_threshold(50_000, 20, 20)  # as a slot process runs
    measure(opts.records // 5)  # warm-up: the key cache fills
    best = min(measure(opts.records) for _ in range(opts.runs))
    where = Path(channels.__file__).parent.parent
    print(f"{best:.1f} CPU ns/record (best of {opts.runs} x {opts.records:,} records) with {where}")


if __name__ == "__main__":
    main()
