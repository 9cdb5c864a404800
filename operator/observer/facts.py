"""Everything observed about one StreamJob in one round: the planner's only input (pure data).

Built by ``observer.gather`` (through the adapters in ``deps``) or by tests (``operator.testing``);
read by ``reconciler.plan`` and its helpers, which read nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from streamjob.operator.model.jobmaster import JobMasterView, SavepointPoll
from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo, StreamJobStatus
from streamjob.operator.observer.pods import PodView
from streamjob.operator.observer.snapshots import SnapshotView
from streamjob.operator.resources.labels import JobRef


@dataclass(frozen=True)
class RetainedPod:
    """A pod of a failed attempt kept for ``kubectl logs`` until ``until``."""

    name: str
    attempt: int
    until: datetime | None


@dataclass(frozen=True)
class Facts:
    """Everything observed about one StreamJob in one round; the planner reads nothing else."""

    job: JobRef
    generation: int
    spec: StreamJobSpec | None
    spec_errors: tuple[str, ...]
    status: StreamJobStatus
    now: datetime
    new_job_id: str
    pods: tuple[PodView, ...] = ()
    jobmaster: JobMasterView = field(default_factory=partial(JobMasterView, reachable=False))
    savepoint_poll: SavepointPoll | None = None
    latest: Mapping[str, SnapshotInfo | None] = field(default_factory=dict)
    skipped: Mapping[str, tuple[CorruptCheckpoint, ...]] = field(default_factory=dict)
    """Per jobId in ``latest``: completed checkpoints newer than its latest, skipped as corrupt."""
    recent_savepoint: SnapshotInfo | None = None
    storage_error: str | None = None
    retained: tuple[RetainedPod, ...] = ()
    """Pods of earlier failed attempts kept for their logs (not part of any attempt any more)."""
    pod_retention_s: float = 3600.0
    """How long the pods of a failed attempt are kept (0: deleted at once)."""
    snapshots: tuple[SnapshotView, ...] = ()
    """The job's StreamJobSnapshots (those whose jobReference names it)."""
    snapshots_listed: bool = False
    """Whether the snapshots could be listed (False: the StreamJobSnapshot CRD is missing or the list failed)."""
    restore_snapshot: SnapshotView | None = None
    """The StreamJobSnapshot ``spec.restoreFrom.snapshotName`` names (of any job in the namespace), if found."""
    lineages: tuple[str, ...] | None = None
    """jobIds found in checkpoint storage; listed only when older lineages may be deleted (else None)."""

    @property
    def valid_spec(self) -> StreamJobSpec | None:
        """The user's spec if it parses and validates: None when nothing may be deployed from it.

        An invalid spec still parses (``spec``) when only ``validation.validate`` refuses it; the
        deployed job is then supervised with the spec it was deployed with (``reconciler.plan``).
        """
        return self.spec if not self.spec_errors else None

    def pods_of(self, attempt: int) -> list[PodView]:
        """The pods of one attempt."""
        return [p for p in self.pods if p.attempt == attempt]

    def snapshot(self, name: str | None) -> SnapshotView | None:
        """The job's StreamJobSnapshot of that name."""
        return next((s for s in self.snapshots if s.name == name), None)

    def latest_of(self, job_id: str | None) -> SnapshotInfo | None:
        """Latest retained snapshot of a lineage, as found in storage."""
        return None if job_id is None else self.latest.get(job_id)
