"""The StreamJobSnapshots of one job as the planner sees them (pure parsing of listed objects).

``observer.gather`` lists the snapshot resources of the job's namespace and keeps those whose
``jobReference`` names the job; ``view_snapshot`` reads one. Read by ``reconciler.snapshot_resources``,
``reconciler.retention`` and ``restore_choice`` (a restore by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from streamjob.operator.model.snapshot import (
    TRIGGER_LABEL,
    USER_TRIGGER,
    SnapshotState,
    StreamJobSnapshotSpec,
    StreamJobSnapshotStatus,
)


@dataclass(frozen=True)
class SnapshotView:
    """One StreamJobSnapshot: its spec (None when it does not parse), status and labels."""

    name: str
    job: str
    spec: StreamJobSnapshotSpec | None
    status: StreamJobSnapshotStatus
    labels: tuple[tuple[str, str], ...] = ()
    created: str | None = None
    deleting: bool = False
    spec_error: str | None = None

    @property
    def trigger(self) -> str:
        """Why it exists: the trigger label (``user`` for a resource the operator did not create)."""
        return dict(self.labels).get(TRIGGER_LABEL) or self.status.trigger or USER_TRIGGER

    @property
    def by_user(self) -> bool:
        """Created by a user (not by the operator for a savepoint it took)."""
        return self.trigger == USER_TRIGGER

    @property
    def state(self) -> SnapshotState | None:
        """The recorded state (None: not seen by the operator yet)."""
        return self.status.state


def view_snapshot(body: dict[str, Any]) -> SnapshotView:
    """Reads one listed StreamJobSnapshot; a spec that does not parse is kept with its error."""
    meta = body.get("metadata") or {}
    raw_spec = body.get("spec") or {}
    spec: StreamJobSnapshotSpec | None = None
    error: str | None = None
    try:
        spec = StreamJobSnapshotSpec.parse(raw_spec)
    except ValidationError as err:
        first = err.errors()[0]
        error = f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    try:
        status = StreamJobSnapshotStatus.parse(body.get("status"))
    except ValidationError:
        status = StreamJobSnapshotStatus()
    job = str(((raw_spec.get("jobReference") or {}) if isinstance(raw_spec, dict) else {}).get("name") or "")
    return SnapshotView(
        name=str(meta.get("name")),
        job=job,
        spec=spec,
        status=status,
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        created=meta.get("creationTimestamp"),
        deleting=bool(meta.get("deletionTimestamp")),
        spec_error=error,
    )
