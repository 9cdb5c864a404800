"""Prometheus metrics of a job, rendered on demand from the JobMaster's state (no globals).

``prometheus_client`` is imported at the first scrape, not with the REST server: a local
``streamjob run`` does not pay for it before its first record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from streamjob.worker.protocol.rest import JobState

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from streamjob.worker.jobmaster.attempt import TaskMetrics
    from streamjob.worker.jobmaster.jobmaster import JobMaster

_STATES = tuple(JobState)


class _JobCollector:
    def __init__(self, jm: JobMaster) -> None:
        self.jm = jm

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        jm = self.jm
        job = jm.config.name
        records_in = CounterMetricFamily(
            "streamjob_records_in", "Records received per task", labels=["job", "vertex", "subtask"]
        )
        records_out = CounterMetricFamily(
            "streamjob_records_out", "Records emitted per task", labels=["job", "vertex", "subtask"]
        )
        backpressure = CounterMetricFamily(
            "streamjob_backpressured_seconds",
            "Time tasks waited for downstream credit",
            labels=["job", "vertex", "subtask"],
        )
        for (vertex, subtask), m in sorted(jm.task_metrics.items()):
            labels = [job, vertex, str(subtask)]
            records_in.add_metric(labels, m.records_in)
            records_out.add_metric(labels, m.records_out)
            backpressure.add_metric(labels, m.backpressured_s)
        yield records_in
        yield records_out
        yield backpressure
        yield from user_metric_families(job, jm.task_metrics)
        state = GaugeMetricFamily("streamjob_job_state", "1 for the job's current state", labels=["job", "state"])
        for s in _STATES:
            state.add_metric([job, s], 1.0 if jm.state == s else 0.0)
        yield state
        restarts = CounterMetricFamily("streamjob_restarts", "Job restarts", labels=["job"])
        restarts.add_metric([job], jm.restarts)
        yield restarts
        stats = jm.stats
        counts = CounterMetricFamily("streamjob_checkpoints", "Checkpoints by outcome", labels=["job", "outcome"])
        counts.add_metric([job, "completed"], stats.completed)
        counts.add_metric([job, "failed"], stats.failed)
        yield counts
        latest = stats.latest_completed
        if latest is not None:
            for name, value, doc in (
                ("streamjob_last_checkpoint_duration_ms", latest.duration_ms, "Duration of the last checkpoint"),
                ("streamjob_last_checkpoint_size_bytes", latest.size, "Size of the last checkpoint"),
                ("streamjob_last_checkpoint_alignment_ms", latest.alignment_ms, "Longest alignment time"),
                (
                    "streamjob_last_checkpoint_cpu_ms",
                    latest.cpu_ms,
                    "CPU time the tasks spent on the last checkpoint (all their threads, summed over tasks)",
                ),
                ("streamjob_last_checkpoint_id", latest.id, "Id of the last completed checkpoint"),
            ):
                g = GaugeMetricFamily(name, doc, labels=["job"])
                g.add_metric([job], float(value))
                yield g


def user_metric_families(job: str, tasks: Mapping[tuple[str, int], TaskMetrics]) -> Iterator[Metric]:
    """The functions' metrics (``api/metrics.py``) of every task, as ``streamjob_user_<name>`` families.

    Labels: job, vertex, subtask, operator and the metric's groups. A counter is a Prometheus counter,
    a gauge a gauge, a meter a counter plus ``<name>_rate`` (events/s), a histogram a summary
    (quantiles 0.5, 0.95, 0.99 of its window, count and sum) plus ``<name>_min`` / ``_max`` gauges. A
    name used with two kinds keeps the first kind seen.
    """
    from prometheus_client.core import Metric

    families: dict[str, Metric] = {}
    kinds: dict[str, str] = {}

    def family(name: str, typ: str, doc: str) -> Metric:
        if name not in families:
            families[name] = Metric(name, doc, typ)
        return families[name]

    for (vertex, subtask), m in sorted(tasks.items()):
        for metric in m.user:
            base = f"streamjob_user_{metric.name}"
            if kinds.setdefault(base, metric.kind) != metric.kind:
                continue
            labels = {"job": job, "vertex": vertex, "subtask": str(subtask), **metric.labels}
            values = metric.values
            if metric.kind == "counter":
                family(base, "counter", "User counter").add_sample(f"{base}_total", labels, values["count"])
            elif metric.kind == "gauge":
                family(base, "gauge", "User gauge").add_sample(base, labels, values["value"])
            elif metric.kind == "meter":
                family(base, "counter", "User meter: events").add_sample(f"{base}_total", labels, values["count"])
                rate = family(f"{base}_rate", "gauge", "User meter: events per second")
                rate.add_sample(f"{base}_rate", labels, values["rate"])
            else:
                summary = family(base, "summary", "User histogram")
                for key, value in values.items():
                    if key in ("count", "sum"):
                        summary.add_sample(f"{base}_{key}", labels, value)
                    elif key in ("min", "max"):
                        family(f"{base}_{key}", "gauge", f"User histogram: {key}").add_sample(
                            f"{base}_{key}", labels, value
                        )
                    elif key != "mean":
                        summary.add_sample(base, {**labels, "quantile": key}, value)
    yield from families.values()


def render_metrics(jm: JobMaster) -> tuple[bytes, str]:
    """The Prometheus text body and its content type."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_JobCollector(jm))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
