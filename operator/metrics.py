"""Prometheus metrics of the operator: jobs per state, restarts, upgrade durations, checkpoint age.

One ``Metrics`` object per operator process, on its own registry (passed in, never global);
``controller`` calls ``observe`` after every round; ``main`` serves the registry over HTTP.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streamjob.operator.model.status import LifecycleState, OperationKind, StreamJobStatus
from streamjob.operator.timeutil import parse_time, seconds_since


class Metrics:
    """The operator's metric families and the per-job state they are derived from."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Registers the families on ``registry`` (a fresh one by default)."""
        self.registry = registry or CollectorRegistry()
        self._states: dict[tuple[str, str], str] = {}
        self.jobs = Gauge("streamjob_jobs", "StreamJobs per lifecycle state", ["state"], registry=self.registry)
        self.restarts = Counter(
            "streamjob_job_restarts", "Restarts after failures", ["namespace", "name"], registry=self.registry
        )
        self.upgrades = Histogram(
            "streamjob_upgrade_duration_seconds",
            "From spec change to Running",
            ["kind"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.checkpoint_age = Gauge(
            "streamjob_checkpoint_age_seconds",
            "Age of the latest completed checkpoint",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.errors = Counter(
            "streamjob_reconcile_errors", "Failed reconcile rounds", ["namespace", "name"], registry=self.registry
        )
        for state in LifecycleState:
            self.jobs.labels(state.value).set(0)

    def observe(self, key: tuple[str, str], old: StreamJobStatus, new: StreamJobStatus, now: datetime) -> None:
        """Updates the families from one round's status transition."""
        self._states[key] = new.lifecycle_state.value
        self._recount()
        if new.restarts.count > old.restarts.count:
            self.restarts.labels(*key).inc(new.restarts.count - old.restarts.count)
        op = old.operation
        finished = op is not None and new.operation is None and new.lifecycle_state is LifecycleState.RUNNING
        if (
            finished
            and op is not None
            and op.kind in (OperationKind.UPGRADE, OperationKind.ROLLBACK, OperationKind.RESTART)
        ):
            started = parse_time(op.started_at)
            if started is not None:
                self.upgrades.labels(op.kind.value).observe((now - started).total_seconds())
        last = new.last_checkpoint
        age = seconds_since(last.time, now) if last is not None else None
        if age is not None:
            self.checkpoint_age.labels(*key).set(age)

    def error(self, key: tuple[str, str]) -> None:
        """Counts a failed round."""
        self.errors.labels(*key).inc()

    def forget(self, key: tuple[str, str]) -> None:
        """Drops a deleted job from the per-state counts."""
        self._states.pop(key, None)
        self._recount()

    def _recount(self) -> None:
        for state in LifecycleState:
            self.jobs.labels(state.value).set(sum(1 for s in self._states.values() if s == state.value))
