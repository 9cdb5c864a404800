"""The user-function benchmark job: user code at every step, none of the runtime's special cases.

Pipeline (the performance issue's job): ``from_generator`` of ``('k%d' % (i % keys), 1)`` → ``map``
(a user lambda building a new ``(key, value)`` tuple, as a parsing step would) → ``key_by`` (a user
lambda) → a ``KeyedProcessFunction`` keeping ``(sum, count)`` per key in ``ValueState`` and
emitting ``(key, sum, count)`` → a sink whose ``SinkFunction.invoke`` is called per record and
counts. ``bench/jobs/keyed_sum.py``'s ``key_by(0).sum(1)`` runs in a special-cased reduce; this job
measures what a typical user pipeline costs.

The sink measures as the keyed-sum job's does (first and last batch, process CPU, peak RSS): it
reads the clock once per batch, then calls its own per-record ``invoke``. With ``--verify`` it adds
up the sum fields: every value is 1, so key k's sums are 1, 2, …, n_k as in the keyed-sum job and
the harness checks the same total. The same work as a plain Python loop, without streamjob, is
``bench/userfn_ref.py`` (scenario ``userfn_ref``).

Run by the harness as ``streamjob run bench/jobs/user_fn.py -- --records N --keys K --out DIR``;
``--keyed-slot-group`` (scenarios ``userfn_p1_ssg``/``userfn_p2_ssg``) adds one line to the job,
``.slot_sharing_group("keyed")`` on the keyed step, so that the keyed step and the sink run in other
slot processes than the source and the map (two cores at p=1).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from keyed_sum import ReportingSink  # the job's folder is on sys.path (streamjob's loader puts it there)

from streamjob.worker.api import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor


class RunningTotals(KeyedProcessFunction[str, tuple[str, int], tuple[str, int, int]]):
    """``(sum, count)`` per key in ValueState; emits ``(key, sum, count)`` for every record."""

    def open(self, runtime_context: Any) -> None:
        self.totals = runtime_context.get_state(ValueStateDescriptor("totals", tuple, None))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        current = self.totals.value()
        total, count = (value[1], 1) if current is None else (current[0] + value[1], current[1] + 1)
        self.totals.update((total, count))
        out.collect((value[0], total, count))


class CountingSink(ReportingSink):
    """A per-record sink: the runtime's batch call reads the clock once, then ``invoke`` per record."""

    def invoke(self, value: Any) -> None:
        self.count += 1
        if self.verify:
            self.value_total += value[1]

    def invoke_batch(self, values: list[Any]) -> None:
        now = time.time()
        self._first_batch(now)
        invoke = self.invoke
        for value in values:
            invoke(value)
        if self.delay:
            time.sleep(self.delay * len(values))
        self._batch_done(now)


def _event(keys: int) -> Any:
    def event(i: int) -> tuple[str, int]:
        return ("k%d" % (i % keys), 1)  # noqa: UP031 - the issue's key format, verbatim

    return event


def build(args: list[str]) -> StreamExecutionEnvironment:
    """The pipeline; ``args`` are this module's command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="user_fn")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--out", required=True, help="directory for the sinks' reports")
    parser.add_argument("--sink-delay-us", type=float, default=0.0, help="sleep per record in the sink")
    parser.add_argument(
        "--verify", action="store_true", help="the sink adds up every output's sum (checked by the harness)"
    )
    parser.add_argument("--rate", type=float, default=None, help="records per second (default: unthrottled)")
    parser.add_argument(
        "--keyed-slot-group",
        action="store_true",
        help="the keyed step and the sink in their own slot sharing group (slot processes beside the source's)",
    )
    opts = parser.parse_args(args)
    env = StreamExecutionEnvironment.get_execution_environment()
    events = env.from_generator(_event(opts.keys), count=opts.records, records_per_second=opts.rate).uid("events")
    parsed = events.map(lambda e: (e[0], e[1])).uid("parse")
    totals = parsed.key_by(lambda e: e[0]).process(RunningTotals()).uid("totals")
    if opts.keyed_slot_group:
        totals.slot_sharing_group("keyed")
    totals.add_sink(CountingSink(opts.out, opts.sink_delay_us / 1e6, opts.verify)).uid("counts")
    return env
