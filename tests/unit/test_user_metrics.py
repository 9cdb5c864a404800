"""User metrics (``api/metrics.py``): registry semantics, meter and histogram values, errors, rendering."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamjob.worker.api.metrics import MAX_METRICS_PER_TASK, Histogram, Meter, MetricGroup, MetricRegistry
from streamjob.worker.errors import ConfigError
from streamjob.worker.jobmaster.attempt import TaskMetrics
from streamjob.worker.jobmaster.metrics import user_metric_families
from streamjob.worker.protocol.messages import TO_JOBMASTER, Metrics, TaskCounters, UserMetric, decode, encode

pytestmark = pytest.mark.unit


def group() -> tuple[MetricRegistry, MetricGroup]:
    registry = MetricRegistry()
    return registry, MetricGroup(registry, (("operator", "op"),))


def test_metrics_are_registered_once_per_name_and_labels_and_snapshot_their_values() -> None:
    registry, g = group()
    assert not registry  # nothing registered: the slot sends nothing more
    c = g.counter("hits")
    assert g.counter("hits") is c  # open() on a second function instance gets the same counter
    c.inc()
    c.inc(4)
    c.dec()
    value = {"v": 2.5}
    g.gauge("level", lambda: value["v"])
    g.gauge("broken", lambda: 1 / 0)
    g.gauge("text", lambda: "many")  # type: ignore[arg-type,return-value]
    g.add_group("cache", "l1").counter("hits").inc(7)
    g.add_group("io").counter("errors").inc()
    snapshot = {(m.name, m.labels): (m.kind, m.values) for m in registry.snapshot(10.0)}
    assert snapshot == {
        ("hits", (("operator", "op"),)): ("counter", {"count": 4.0}),
        ("level", (("operator", "op"),)): ("gauge", {"value": 2.5}),
        ("hits", (("operator", "op"), ("cache", "l1"))): ("counter", {"count": 7.0}),
        ("io_errors", (("operator", "op"),)): ("counter", {"count": 1.0}),
    }  # the failing and the non-numeric gauge are left out, the task goes on


def test_the_meter_rate_is_events_per_second_over_its_time_span() -> None:
    meter = Meter(time_span_s=10, now_s=0.0)
    meter.mark_event(50)
    assert meter.rate(5.0) == 10.0  # 50 events in the 5 s since creation
    meter.mark_event(50)
    assert meter.rate(10.0) == 10.0
    assert meter.rate(30.0) == 0.0  # nothing for 20 s: the samples older than 10 s are dropped
    assert meter.get_count() == 100


def test_the_histogram_reports_its_window_and_totals() -> None:
    h = Histogram(window_size=100)
    for v in range(1, 201):  # the window keeps 101..200
        h.update(v)
    stats = h.statistics()
    assert stats["count"] == 200 and stats["sum"] == sum(range(1, 201))
    assert (stats["min"], stats["max"], stats["mean"]) == (101, 200, 150.5)
    assert (stats["0.5"], stats["0.95"], stats["0.99"]) == (150, 195, 199)
    assert Histogram().statistics() == {"count": 0.0, "sum": 0.0}


def test_bad_names_kinds_and_too_many_metrics_are_refused_with_the_fix() -> None:
    _, g = group()
    with pytest.raises(ConfigError, match=r"metric name 'cache hits' is invalid: use letters"):
        g.counter("cache hits")
    with pytest.raises(ConfigError, match=r"metric group '9x' is invalid"):
        g.add_group("9x", "v")
    with pytest.raises(ConfigError, match=r"metric group key 'subtask' is taken"):
        g.add_group("subtask", "3")
    with pytest.raises(ConfigError, match=r"gauge 'g' takes a function"):
        g.gauge("g", 5)  # type: ignore[arg-type]
    g.counter("x")
    with pytest.raises(ConfigError, match=r"metric 'x' is already a counter"):
        g.histogram("x")
    for i in range(MAX_METRICS_PER_TASK - 1):
        g.counter(f"c{i}")
    with pytest.raises(ConfigError, match=r"at most 1000 user metrics; 'one_more' is one too many"):
        g.counter("one_more")


def test_reports_cross_the_control_protocol_and_render_as_prometheus_families() -> None:
    registry, g = group()
    g.counter("hits").inc(3)
    g.meter("events", time_span_in_seconds=60)
    h = g.histogram("latency")
    for v in (1, 2, 3, 4):
        h.update(v)
    g.add_group("cache", "l1").gauge("size", lambda: 12)
    user = [
        UserMetric(name=m.name, kind=m.kind, labels=dict(m.labels), values=m.values)  # type: ignore[arg-type]
        for m in registry.snapshot(1.0)
    ]
    report = Metrics(
        tasks=[TaskCounters(vertex="map", subtask=1, records_in=0, records_out=0, backpressured_s=0.0, user=user)]
    )
    received = decode(encode(report), TO_JOBMASTER)
    assert received == report
    tasks = {("map", 1): TaskMetrics(user=received.tasks[0].user)}  # type: ignore[union-attr]

    class Collector:
        def collect(self) -> Any:
            return user_metric_families("job-a", tasks)

    prometheus = CollectorRegistry(auto_describe=False)
    prometheus.register(Collector())  # type: ignore[arg-type]
    text = generate_latest(prometheus).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    base = (("job", "job-a"), ("operator", "op"), ("subtask", "1"), ("vertex", "map"))
    assert samples[("streamjob_user_hits_total", base)] == 3
    assert samples[("streamjob_user_events_total", base)] == 0
    assert ("streamjob_user_events_rate", base) in samples
    assert samples[("streamjob_user_latency_count", base)] == 4
    assert samples[("streamjob_user_latency_sum", base)] == 10
    assert samples[("streamjob_user_latency", tuple(sorted((*base, ("quantile", "0.5")))))] == 2
    assert samples[("streamjob_user_latency_max", base)] == 4
    assert samples[("streamjob_user_size", tuple(sorted((*base, ("cache", "l1")))))] == 12
