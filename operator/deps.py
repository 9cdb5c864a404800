"""The collaborators of one operator process, passed explicitly (never module-level singletons).

Built by ``handlers`` at start-up (real adapters) or by tests (fakes); read by ``observer.gather``
and ``controller``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamjob.operator.checkpoints import SnapshotFinder
from streamjob.operator.jobmaster_client import JobMasterApi
from streamjob.operator.k8s import KubeApi
from streamjob.operator.metrics import Metrics
from streamjob.operator.settings import OperatorConfig


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Deps:
    """Kubernetes, the JobMasters, storage, metrics, settings, the clock and the jobId generator."""

    kube: KubeApi
    jobmaster: JobMasterApi
    snapshots: SnapshotFinder
    metrics: Metrics
    config: OperatorConfig = field(default_factory=OperatorConfig)
    clock: Callable[[], datetime] = _utcnow
    new_job_id: Callable[[], str] = _new_job_id
