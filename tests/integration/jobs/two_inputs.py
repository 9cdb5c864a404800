"""Two-input jobs with an exactly-once file sink, and the output a failure-free run gives.

``mode=co``: a ``KeyedCoProcessFunction`` over orders ``i -> (k{i % keys}, 10 i)`` and payments
``j -> (k{j % keys}, 10 j + 5)``. Each order registers an event-time timer at its timestamp; each
payment is kept in keyed list state; a timer at ``T`` moves the key's payments up to ``T`` into a
keyed counter and emits ``[key, T, counter]``. The timer fires once both inputs' watermarks
(monotonous, per generator split) passed ``T``, so every payment up to ``T`` is counted: order ``i``
gets the payments ``j < i`` of its key, ``i // keys`` of them.

``mode=broadcast``: a ``KeyedBroadcastProcessFunction``: events ``i -> (k{i % keys}, 10 i,
(31 i) % 100)`` and rules ``j -> (500 j, (37 j) % 100)``, broadcast into a versioned threshold
state (rule timestamp -> threshold). An event waits in keyed map state for its event-time timer,
which judges it by the version in force at its time and counts the key's alerts: the output is
``[key, T, amount, threshold, alerts so far]``.

Args (``name=value``): ``mode``, ``out`` (FileSink URI), ``count``, ``keys``, ``rate``, ``rocksdb=1``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from streamjob.worker.api.file_sink import FileSink

THRESHOLDS = MapStateDescriptor("thresholds", int, int)
RULE_EVERY_MS = 500


def order(keys: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, int]:
        return (f"k{i % keys}", 10 * i)

    return make


def payment(keys: int):  # type: ignore[no-untyped-def]
    def make(j: int) -> tuple[str, int]:
        return (f"k{j % keys}", 10 * j + 5)

    return make


def event(keys: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, int, int]:
        return (f"k{i % keys}", 10 * i, (31 * i) % 100)

    return make


def rule(j: int) -> tuple[int, int]:
    return (RULE_EVERY_MS * j, (37 * j) % 100)


class PaidBefore(KeyedCoProcessFunction[Any, Any, Any, Any]):
    def open(self, runtime_context: Any) -> None:
        self.payments = runtime_context.get_list_state(ListStateDescriptor("payments", int))
        self.counted = runtime_context.get_state(ValueStateDescriptor("counted", int, 0))

    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service().register_event_time_timer(value[1])

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        self.payments.add(value[1])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        payments = self.payments.get()
        due = [t for t in payments if t <= timestamp]
        if due:
            self.counted.update(self.counted.value() + len(due))
            self.payments.update([t for t in payments if t > timestamp])
        out.collect([ctx.get_current_key(), timestamp, self.counted.value()])


class Alerts(KeyedBroadcastProcessFunction[Any, Any, Any, Any]):
    def open(self, runtime_context: Any) -> None:
        self.pending = runtime_context.get_map_state(MapStateDescriptor("pending", int, list))
        self.alerts = runtime_context.get_state(ValueStateDescriptor("alerts", int, 0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        self.pending.put(value[1], [*(self.pending.get(value[1]) or []), value[2]])
        ctx.timer_service().register_event_time_timer(value[1])

    def process_broadcast_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.get_broadcast_state(THRESHOLDS).put(value[0], value[1])

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        versions = ctx.get_broadcast_state(THRESHOLDS)
        times = versions.keys()
        threshold = versions.get(max(t for t in times if t <= timestamp))
        for amount in self.pending.get(timestamp):
            if amount > threshold:
                self.alerts.update(self.alerts.value() + 1)
            out.collect([ctx.get_current_key(), timestamp, amount, threshold, self.alerts.value()])
        self.pending.remove(timestamp)


def _monotonous(position: int) -> WatermarkStrategy:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r: r[position])


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    keys, count, rate = int(opts.get("keys", "10")), int(opts.get("count", "3000")), float(opts.get("rate", "500"))
    if opts.get("mode", "co") == "co":
        orders = env.from_generator(order(keys), count, rate).uid("orders")
        payments = env.from_generator(payment(keys), count, rate).uid("payments")
        first = orders.assign_timestamps_and_watermarks(_monotonous(1)).uid("orders-ts").key_by(lambda r: r[0])
        second = payments.assign_timestamps_and_watermarks(_monotonous(1)).uid("payments-ts").key_by(lambda r: r[0])
        result = first.connect(second).process(PaidBefore()).uid("co")
    else:
        events = env.from_generator(event(keys), count, rate).uid("events")
        rules = env.from_generator(rule, count * 10 // RULE_EVERY_MS + 1, rate * 10 / RULE_EVERY_MS).uid("rules")
        data = events.assign_timestamps_and_watermarks(_monotonous(1)).uid("events-ts").key_by(lambda r: r[0])
        bcast = rules.assign_timestamps_and_watermarks(_monotonous(0)).uid("rules-ts").broadcast(THRESHOLDS)
        result = data.connect(bcast).process(Alerts()).uid("alerts")
    result.add_sink(FileSink(opts["out"])).uid("sink")
    return env


def expected(mode: str, count: int, keys: int) -> list[list[Any]]:
    """Every output row of a failure-free run, sorted."""
    if mode == "co":
        return sorted([f"k{i % keys}", 10 * i, i // keys] for i in range(count))
    rows = []
    alerts: dict[str, int] = {}
    for i in range(count):
        key, t, amount = event(keys)(i)
        threshold = rule(t // RULE_EVERY_MS)[1]
        alerts[key] = alerts.get(key, 0) + (amount > threshold)
        rows.append([key, t, amount, threshold, alerts[key]])
    return sorted(rows)
