"""The ``StreamJobSnapshot`` resource: one savepoint or checkpoint of a StreamJob, as a Kubernetes object.

A user creates one to take a snapshot (or to record one taken elsewhere, ``spec.path``); the
operator creates one for every savepoint it takes (nonce, periodic, upgrade, suspension, deletion).
Its status follows TRIGGER_PENDING → IN_PROGRESS → COMPLETED | FAILED | ABANDONED. Deleting one
with ``disposeOnDelete`` deletes its files (the operator's finalizer), unless it is a restore point
in use. Read by ``observer.snapshots``, the planner (``reconciler.snapshot_resources``) and the
disposal at the edge; ``crd`` generates its CustomResourceDefinition.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from streamjob.operator.model.spec import CEL, GROUP, VERSION, CamelModel

SNAPSHOT_KIND = "StreamJobSnapshot"
SNAPSHOT_PLURAL = "streamjobsnapshots"
SNAPSHOT_SHORT_NAME = "sjs"

TYPE_LABEL = "streamjob.dev/snapshot-type"
TRIGGER_LABEL = "streamjob.dev/trigger"
"""Why the snapshot was taken: user (a StreamJobSnapshot a user created), manual (savepointTriggerNonce /
checkpointTriggerNonce), periodic, upgrade, suspend, redeploy, deletion."""
USER_TRIGGER = "user"
SNAPSHOT_URI = r"^(s3://[^/]+/.+|file:///.+)$"
SNAPSHOT_API_VERSION = f"{GROUP}/{VERSION}"


class SnapshotType(StrEnum):
    """A savepoint (self-contained, portable) or a checkpoint (of the job's lineage)."""

    SAVEPOINT = "savepoint"
    CHECKPOINT = "checkpoint"


class SnapshotState(StrEnum):
    """Where a snapshot is in its life."""

    TRIGGER_PENDING = "TRIGGER_PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"

    @property
    def settled(self) -> bool:
        """No further change: COMPLETED, FAILED or ABANDONED."""
        return self in (SnapshotState.COMPLETED, SnapshotState.FAILED, SnapshotState.ABANDONED)


class JobReference(CamelModel):
    """The StreamJob (in the snapshot's namespace) the snapshot belongs to."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the StreamJob.",
    )


class StreamJobSnapshotSpec(CamelModel):
    """A savepoint or checkpoint to take (or, with ``path``, one already taken)."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "!(self.type == 'checkpoint' && has(self.disposeOnDelete) && self.disposeOnDelete)",
                    "message": "disposeOnDelete cannot be true for a checkpoint: its files belong to the job's "
                    "checkpoint retention (checkpoint.retained)",
                },
                {
                    "rule": "self.jobReference == oldSelf.jobReference && self.type == oldSelf.type "
                    "&& has(self.path) == has(oldSelf.path) && (!has(self.path) || self.path == oldSelf.path)",
                    "message": "jobReference, type and path cannot change; create another StreamJobSnapshot",
                },
            ]
        }
    )

    job_reference: JobReference = Field(description="The StreamJob to snapshot.")
    type: SnapshotType = Field(default=SnapshotType.SAVEPOINT, description="savepoint or checkpoint.")
    path: str | None = Field(
        default=None,
        pattern=SNAPSHOT_URI,
        max_length=2048,
        description="A snapshot that already exists (its directory, holding _metadata): recorded as COMPLETED "
        "instead of taking one. Its files are disposed only when they lie under the job's own storage.",
    )
    dispose_on_delete: bool | None = Field(
        default=None,
        description="Delete the snapshot's files when this resource is deleted (default: true for a savepoint, "
        "false for a checkpoint). Refused while it is the restore point of the job.",
    )
    backoff_limit: int = Field(
        default=1, ge=0, le=100, description="Retries of a failed trigger before the snapshot is FAILED."
    )

    @property
    def disposes(self) -> bool:
        """Whether deleting the resource deletes its files."""
        if self.dispose_on_delete is not None:
            return self.dispose_on_delete
        return self.type is SnapshotType.SAVEPOINT

    @classmethod
    def parse(cls, raw: object) -> StreamJobSnapshotSpec:
        """Validates a spec dict from the API server; raises pydantic's ValidationError."""
        return cls.model_validate(raw)


class SnapshotStorage(CamelModel):
    """The job's S3 connection when the snapshot completed: its files can be disposed after the job is gone."""

    endpoint: str | None = Field(default=None, description="S3 endpoint URL.")
    region: str | None = Field(default=None, description="S3 region.")
    path_style: bool | None = Field(default=None, description="Path-style addressing.")
    checkpoints_uri: str | None = Field(default=None, description="The job's checkpointsUri.")
    savepoints_uri: str | None = Field(default=None, description="The job's savepoints root.")


class StreamJobSnapshotStatus(CamelModel):
    """What became of the snapshot: its state, its location and what went wrong."""

    state: SnapshotState | None = Field(default=None, description="Lifecycle state.")
    path: str | None = Field(default=None, description="Location of the completed snapshot (its directory).")
    job_id: str | None = Field(default=None, description="Lineage (jobId) the snapshot was taken of.")
    trigger: str | None = Field(default=None, description="Why it was taken (also the streamjob.dev/trigger label).")
    trigger_timestamp: str | None = Field(default=None, description="When it was last triggered (RFC 3339).")
    result_timestamp: str | None = Field(default=None, description="When it completed or failed (RFC 3339).")
    failures: int = Field(default=0, ge=0, description="Failed triggers so far.")
    error: str | None = Field(default=None, description="The last failure, or why deletion is refused (one line).")
    storage: SnapshotStorage | None = Field(default=None, description="Where the job's storage was.")

    @classmethod
    def parse(cls, raw: object) -> StreamJobSnapshotStatus:
        """Reads status as stored (unknown keys are ignored)."""
        return cls.model_validate(raw or {})
