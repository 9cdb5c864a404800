"""Broadcast rules: a stream of threshold rules broadcast to every subtask of a keyed payment stream.

Run it: ``streamjob run examples/broadcast_rules.py -p 2``. Rules change over time, so each rule
name keeps its versions in broadcast state (``(valid_from, threshold)``, newest last). A payment
waits for an event-time timer at its own timestamp; by then the watermark of *both* inputs passed
it, so every rule version up to that time is known on every subtask, and the payment is judged by
the versions in force at its time, whatever order the two streams arrived in. Each user's alert
count is keyed state. Broadcast state is checkpointed once and restored to every subtask, at any
parallelism. ``alerts`` is the pipeline without sources and sink, for tests
(``tests/unit/test_example_broadcast_rules.py`` crashes and resumes it in process).
"""

from dataclasses import dataclass

from streamjob.worker.api import (
    KeyedBroadcastProcessFunction,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    Time,
    ValueStateDescriptor,
    WatermarkStrategy,
)


@dataclass(frozen=True)
class Payment:
    user: str
    amount: float
    timestamp: int


@dataclass(frozen=True)
class Rule:
    name: str
    threshold: float
    valid_from: int


# rule name -> [[valid_from, threshold], ...] sorted by valid_from: the same on every subtask
RULES = MapStateDescriptor("rules", str, list)


class RuleChecker(KeyedBroadcastProcessFunction):
    """Judges each user's payments at their event time by the rule versions in force then."""

    def open(self, runtime_context):
        self.waiting = runtime_context.get_map_state(MapStateDescriptor("waiting", int, list))
        self.alert_count = runtime_context.get_state(ValueStateDescriptor("alert-count", int, 0))

    def process_broadcast_element(self, rule, ctx, out):
        rules = ctx.get_broadcast_state(RULES)
        versions = [v for v in rules.get(rule.name) or [] if v[0] != rule.valid_from]
        rules.put(rule.name, sorted([*versions, [rule.valid_from, rule.threshold]]))

    def process_element(self, payment, ctx, out):
        self.waiting.put(payment.timestamp, [*(self.waiting.get(payment.timestamp) or []), payment.amount])
        ctx.timer_service().register_event_time_timer(payment.timestamp)

    def on_timer(self, timestamp, ctx, out):
        rules = ctx.get_broadcast_state(RULES)
        for amount in self.waiting.get(timestamp):
            for name, versions in sorted(rules.items()):
                in_force = [threshold for valid_from, threshold in versions if valid_from <= timestamp]
                if in_force and amount > in_force[-1]:
                    self.alert_count.update(self.alert_count.value() + 1)
                    out.collect(
                        f"ALERT {name}: user {ctx.get_current_key()} paid {amount} > {in_force[-1]} "
                        f"at {timestamp} (alert {self.alert_count.value()})"
                    )
        self.waiting.remove(timestamp)


def alerts(payments, rules):
    """The alert lines of ``payments`` judged by ``rules`` (both streams with event time)."""
    broadcast_rules = rules.broadcast(RULES)
    keyed = payments.key_by(lambda p: p.user)
    return keyed.connect(broadcast_rules).process(RuleChecker()).uid("rule-checker")


PAYMENTS = [
    Payment("alice", 120.0, 1_000),
    Payment("bob", 40.0, 1_500),
    Payment("alice", 60.0, 4_000),
    Payment("bob", 900.0, 6_000),
]
RULE_CHANGES = [
    Rule("large-payment", 100.0, 0),
    Rule("large-payment", 50.0, 3_000),
    Rule("huge-payment", 500.0, 5_000),
]


def with_event_time(payments, rules):
    """Both streams with their event timestamps (out of order by up to 1 s)."""
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Time.seconds(1))
    return (
        payments.assign_timestamps_and_watermarks(strategy.with_timestamp_assigner(lambda p: p.timestamp)),
        rules.assign_timestamps_and_watermarks(strategy.with_timestamp_assigner(lambda r: r.valid_from)),
    )


def build():
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(1000)
    payments = env.from_collection(PAYMENTS).uid("payments")
    rules = env.from_collection(RULE_CHANGES).uid("rules")
    alerts(*with_event_time(payments, rules)).print()
    env.execute("Broadcast Rules Example")


if __name__ == "__main__":
    build()
