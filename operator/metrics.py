"""Prometheus metrics of the operator: jobs per state, and per job its state, restarts, failures, checkpoint age.

Per job (labels ``namespace``, ``name``): ``streamjob_job_state`` (1 for the current lifecycle state),
``streamjob_job_restarts`` (restarts after failures), ``streamjob_job_failures`` (failed attempts by
reason: the exception the JobMaster reported, else ``PodFailed``), ``streamjob_checkpoint_age_seconds``
and ``streamjob_savepoint_failures``; checkpoint progress is here and in status, never in Events.

One ``Metrics`` object per operator process, on its own registry (passed in, never global);
``controller`` calls ``observe`` after every round; ``main`` serves the registry over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        self._reasons: dict[tuple[str, str], set[str]] = {}
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
        self.state = Gauge(
            "streamjob_job_state",
            "1 for the job's current lifecycle state",
            ["namespace", "name", "state"],
            registry=self.registry,
        )
        self.failures = Counter(
            "streamjob_job_failures",
            "Failed attempts by reason (the exception reported, else PodFailed)",
            ["namespace", "name", "reason"],
            registry=self.registry,
        )
        self.savepoint_failures = Counter(
            "streamjob_savepoint_failures",
            "Savepoints that failed (manual, upgrade, suspend, deletion)",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.errors = Counter(
            "streamjob_reconcile_errors", "Failed reconcile rounds", ["namespace", "name"], registry=self.registry
        )
        for state in LifecycleState:
            self.jobs.labels(state.value).set(0)

    def observe(
        self,
        key: tuple[str, str],
        old: StreamJobStatus,
        new: StreamJobStatus,
        now: datetime,
        events: Iterable[str] = (),
    ) -> None:
        """Updates the families from one round's status transition and the Event reasons it posted."""
        self._states[key] = new.lifecycle_state.value
        self._recount()
        for state in LifecycleState:
            self.state.labels(*key, state.value).set(1 if state is new.lifecycle_state else 0)
        for reason in events:
            if reason == "AttemptFailed":
                cause = new.last_failure.exception if new.last_failure is not None else None
                self.failures.labels(*key, cause or "PodFailed").inc()
                self._reasons.setdefault(key, set()).add(cause or "PodFailed")
            elif reason == "SavepointFailed":
                self.savepoint_failures.labels(*key).inc()
        if new.restarts.count > old.restarts.count:
            self.restarts.labels(*key).inc(new.restarts.count - old.restarts.count)
        if new.restarts.in_place > old.restarts.in_place:  # the JobMaster's own restarts count too
            self.restarts.labels(*key).inc(new.restarts.in_place - old.restarts.in_place)
        op = old.operation
        finished = op is not None and new.operation is None and new.lifecycle_state.running
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
        """Drops a deleted job from the per-state counts and its per-job series."""
        self._states.pop(key, None)
        self._recount()
        series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [(self.state, (*key, s.value)) for s in LifecycleState]
        series += [(self.failures, (*key, reason)) for reason in self._reasons.pop(key, set())]
        series += [(family, key) for family in (self.restarts, self.checkpoint_age, self.savepoint_failures)]
        for family, labels in series:
            try:
                family.remove(*labels)
            except KeyError:
                continue  # never observed

    def _recount(self) -> None:
        for state in LifecycleState:
            self.jobs.labels(state.value).set(sum(1 for s in self._states.values() if s == state.value))
