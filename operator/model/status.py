"""The ``status`` of a StreamJob: the operator's durable memory and the user's view of the job.

Status is a write-ahead log. Before any destructive step (deleting pods, stopping with a
savepoint, deploying a new attempt) the controller records the ``operation`` it is about to carry
out — target spec, jobId, attempt, and the snapshot it will restore (``restoreFrom``) — so that an
operator restart resumes the same operation instead of starting another. Written only through
``controller`` (via ``k8s.patch_status``); read by ``decisions`` and the printer columns.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from streamjob.operator.model.spec import CamelModel


class LifecycleState(StrEnum):
    """Where the job is in its life; derived from observed facts and the current operation."""

    CREATED = "Created"
    DEPLOYING = "Deploying"
    RUNNING = "Running"
    RECOVERING = "Recovering"
    UPGRADING = "Upgrading"
    ROLLING_BACK = "RollingBack"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    ROLLED_BACK = "RolledBack"
    """Running the last stable spec after an upgrade failed: the spec still holds the rejected change."""
    FINISHED = "Finished"
    FAILED = "Failed"
    DELETING = "Deleting"

    @property
    def running(self) -> bool:
        """The job processes: Running, or RolledBack (running the last stable spec)."""
        return self in (LifecycleState.RUNNING, LifecycleState.ROLLED_BACK)


class OperationKind(StrEnum):
    """What an operation is for; decides the lifecycle state shown while it runs."""

    DEPLOY = "deploy"
    RESTART = "restart"
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"
    SUSPEND = "suspend"
    RESUME = "resume"
    REDEPLOY = "redeploy"
    RESCALE = "rescale"
    """A parallelism change in place: the same attempt and JobMaster (``reconciler/rescale.py``)."""


class OperationStep(StrEnum):
    """The steps of every operation, in order; each one is idempotent and resumable."""

    SNAPSHOT = "snapshot"  # take the savepoint (or find the checkpoint) to carry the state over
    TEARDOWN = "teardown"  # delete the pods of the old attempt and wait until they are gone
    WAIT = "wait"  # restart backoff
    DEPLOY = "deploy"  # create the ConfigMap, Service and pods of the new attempt
    VERIFY = "verify"  # wait for Running and stable, or time out


class SnapshotInfo(CamelModel):
    """A completed checkpoint or savepoint as found in storage or reported by the JobMaster."""

    kind: Literal["checkpoint", "savepoint"] = Field(description="checkpoint or savepoint.")
    location: str = Field(description="URI of the snapshot directory (holding _metadata).")
    id: int | None = Field(default=None, description="Checkpoint id.")
    job_id: str | None = Field(default=None, description="Lineage the snapshot belongs to.")
    time: str | None = Field(default=None, description="Completion time (RFC 3339).")
    size_bytes: int | None = Field(default=None, description="Total state size.")
    duration_ms: int | None = Field(default=None, description="How long the snapshot took.")
    trigger: str | None = Field(
        default=None, description="Why it was taken: periodic, manual, upgrade, suspend, deletion."
    )


class CorruptCheckpoint(CamelModel):
    """A completed checkpoint skipped when finding the latest one: its _metadata cannot be used."""

    location: str = Field(description="URI of the checkpoint directory.")
    id: int = Field(description="Checkpoint id.")
    job_id: str = Field(description="Lineage the checkpoint belongs to.")
    reason: str = Field(description="Why its _metadata was refused (one line).")
    reported_at: str | None = Field(default=None, description="When the operator reported it (RFC 3339).")


class SnapshotRequest(CamelModel):
    """A savepoint or checkpoint the operator asked the JobMaster for and is waiting on."""

    kind: Literal["checkpoint", "savepoint"] = Field(description="What was requested.")
    trigger: str = Field(description="manual, upgrade, suspend or deletion.")
    nonce: int | None = Field(default=None, description="The trigger nonce this request answers.")
    request_id: str | None = Field(default=None, description="The JobMaster's request id, once known.")
    stop: bool = Field(default=False, description="Stop-with-savepoint.")
    started_at: str = Field(description="When it was requested (RFC 3339).")
    baseline_checkpoint_id: int | None = Field(
        default=None, description="Latest checkpoint id before a checkpoint request (to see a new one)."
    )
    error: str | None = Field(default=None, description="Why the JobMaster refused the request.")
    snapshot: str | None = Field(default=None, description="The StreamJobSnapshot that records this request.")
    key: str | None = Field(
        default=None,
        description="Sent as POST /savepoints' request_key: sent again (a lost answer), it finds the same request.",
    )
    waiting_for: str | None = Field(
        default=None, description="What the operator waits for before it settles the request (in words)."
    )


class Deployment(CamelModel):
    """The attempt that is (or was last) deployed."""

    attempt: int = Field(ge=0, description="Attempt number; pods carry it as streamjob.dev/attempt.")
    job_id: str = Field(description="Lineage of the attempt (checkpoints live under it).")
    spec: dict[str, Any] = Field(description="The spec the attempt runs.")
    restore_from: str | None = Field(default=None, description="Snapshot the attempt restored.")
    started_at: str = Field(description="When the attempt was created (RFC 3339).")
    running_since: str | None = Field(default=None, description="When all its pods became Running.")
    stable: bool = Field(default=False, description="Ran long enough (or checkpointed) to count as stable.")
    generation: int | None = Field(default=None, description="Resource generation the spec came from.")
    rolled_back: bool = Field(
        default=False, description="Deployed by a rollback: runs lastStableSpec, not the spec the user applied."
    )
    jobmaster_restarts: int = Field(
        default=0, ge=0, description="The attempt's JobMaster's own restart count, as last read (GET /job)."
    )

    @property
    def running_state(self) -> LifecycleState:
        """The lifecycle state while this deployment runs: RolledBack after a rollback, else Running."""
        return LifecycleState.ROLLED_BACK if self.rolled_back else LifecycleState.RUNNING


class Operation(CamelModel):
    """The write-ahead intent: what the operator is doing, recorded before it does it."""

    kind: OperationKind = Field(description="What the operation is for.")
    step: OperationStep = Field(description="The step in progress.")
    target_spec: dict[str, Any] | None = Field(default=None, description="Spec to deploy (absent when suspending).")
    target_generation: int | None = Field(default=None, description="Generation of targetSpec.")
    job_id: str | None = Field(default=None, description="jobId of the next attempt.")
    attempt: int | None = Field(default=None, description="Number of the next attempt.")
    restore_from: str | None = Field(default=None, description="Snapshot the next attempt restores.")
    restore_mode: Literal["savepoint", "checkpoint", "none", "pending"] = Field(
        default="pending", description="Where restoreFrom comes from (pending until decided)."
    )
    intent: Literal["initial", "requested", "fresh", "carry", "recover", "revive"] = Field(
        default="recover",
        description="What state the operation must deploy with (see docs/user-guide.md, empty state): "
        "initial (first deploy), requested (initialSavepointPath), fresh (stateless, chosen by the user), "
        "carry (upgrade/suspend/resume: a snapshot or nothing), recover (restart of the lineage), "
        "revive (bringing a Failed or Finished job back).",
    )
    savepoint: str | None = Field(
        default=None, description="Savepoint this operation took (upgrade, suspend) or resumes (after a suspension)."
    )
    restore_reason: str = Field(default="", description="Why restoreFrom was chosen, in words.")
    started_at: str = Field(description="When the operation began.")
    step_started_at: str = Field(description="When the current step began (for its timeout).")
    not_before: str | None = Field(default=None, description="Backoff: do not deploy before this time.")
    reason: str = Field(default="", description="Why the operation was started.")


class LineageEntry(CamelModel):
    """One jobId the operator started: where its state came from (the lineage survives in status)."""

    job_id: str = Field(description="The jobId (checkpoint directory).")
    started_from: str | None = Field(
        default=None, description="Snapshot its first attempt restored; absent when it began with an empty state."
    )
    parent: str | None = Field(default=None, description="The jobId deployed before it.")
    reason: str = Field(default="", description="Why it began (first deploy, upgrade savepoint, stateless, ...).")
    started_at: str | None = Field(default=None, description="When its first attempt was deployed (RFC 3339).")


class HeldChange(CamelModel):
    """An upgrade or suspension refused because there was no state to carry over."""

    spec: dict[str, Any] = Field(description="The spec that was refused.")
    checkpoint: str | None = Field(
        default=None, description="Latest retained snapshot when refused; a newer one retries the change."
    )


class RestartsStatus(CamelModel):
    """Restarts after failures since the last reset."""

    count: int = Field(default=0, ge=0, description="Restarts so far.")
    in_place: int = Field(
        default=0,
        ge=0,
        description="Restarts the JobMaster made itself after a worker failed (its pod kept, the tasks redeployed "
        "from the latest checkpoint); counted from its GET /job, not in count (its own restart strategy limits them).",
    )
    last_reason: str | None = Field(default=None, description="Why the last attempt failed.")
    last_time: str | None = Field(default=None, description="When it failed.")


class Condition(CamelModel):
    """A Kubernetes-style condition."""

    type: str = Field(description="Ready, Stable, CheckpointsProgressing, SpecValid, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason.")
    message: str = Field(default="", description="Human explanation.")
    last_transition_time: str | None = Field(default=None, description="When status last changed.")


class FailureInfo(CamelModel):
    """The root cause of the last failed attempt, as the JobMaster (or the failed pod) reported it."""

    attempt: int = Field(ge=0, description="The attempt that failed.")
    time: str | None = Field(default=None, description="When the operator saw it fail (RFC 3339).")
    summary: str = Field(description="One line: the exception, its message, the operator and task.")
    exception: str | None = Field(default=None, description="The exception's type name.")
    message: str | None = Field(default=None, description="The exception's message.")
    task: str | None = Field(default=None, description="The task that failed: vertex (subtask).")
    operator_uid: str | None = Field(default=None, description="The uid of the operator whose code raised.")
    traceback: list[str] = Field(default_factory=list, description="The innermost traceback lines, exception last.")
    retained_pods: list[str] = Field(
        default_factory=list, description="Pods of the failed attempt kept for `kubectl logs` (until retainedUntil)."
    )
    retained_until: str | None = Field(default=None, description="When the retained pods are deleted (RFC 3339).")


class NonceStatus(CamelModel):
    """The nonces the operator has already acted on."""

    savepoint: int | None = Field(default=None, description="Last savepointTriggerNonce handled.")
    checkpoint: int | None = Field(default=None, description="Last checkpointTriggerNonce handled.")
    restart: int | None = Field(default=None, description="Last restartNonce handled.")
    savepoint_redeploy: int | None = Field(default=None, description="Last savepointRedeployNonce handled.")


class StreamJobStatus(CamelModel):
    """What the operator knows: state, lineage, snapshots, restarts, and its in-flight operation."""

    lifecycle_state: LifecycleState = Field(default=LifecycleState.CREATED, description="Lifecycle state.")
    job_id: str | None = Field(default=None, description="Current lineage (checkpoint directory).")
    attempt: int = Field(default=0, ge=0, description="Current attempt number.")
    parallelism: int | None = Field(
        default=None, description="Parallelism of the running attempt (the scale subresource's replicas)."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the job's worker pods (the scale subresource's, for an HPA)."
    )
    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    job_state: str | None = Field(default=None, description="Job state reported by the JobMaster.")
    standby_workers: int | None = Field(
        default=None,
        ge=0,
        description="Standby worker pods whose slots are registered with the JobMaster as idle spares "
        "(spec.standbyWorkers ready to take over a failed worker at once).",
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
    last_checkpoint: SnapshotInfo | None = Field(default=None, description="Newest completed checkpoint.")
    last_savepoint: SnapshotInfo | None = Field(default=None, description="Newest savepoint.")
    savepoint_history: list[SnapshotInfo] = Field(default_factory=list, description="Savepoints, newest first.")
    restarts: RestartsStatus = Field(default_factory=RestartsStatus, description="Restarts after failures.")
    restore_from: str | None = Field(
        default=None, description="Snapshot the current (or next) attempt restores, shown before acting."
    )
    last_stable_spec: dict[str, Any] | None = Field(default=None, description="Last spec that ran stably.")
    last_reconciled_spec: dict[str, Any] | None = Field(
        default=None, description="Last spec the operator acted on (may differ after a rollback)."
    )
    deployment: Deployment | None = Field(default=None, description="The attempt deployed now.")
    operation: Operation | None = Field(default=None, description="Write-ahead intent of the operation.")
    snapshot_request: SnapshotRequest | None = Field(
        default=None, description="A savepoint/checkpoint in flight at the JobMaster."
    )
    nonces: NonceStatus = Field(default_factory=NonceStatus, description="Nonces already handled.")
    lineage: list[LineageEntry] = Field(
        default_factory=list, description="jobIds the operator started, newest first (bounded)."
    )
    held: HeldChange | None = Field(
        default=None,
        description="A spec change refused for lack of state to carry; retried on a new checkpoint or spec change.",
    )
    corrupt_checkpoints: list[CorruptCheckpoint] = Field(
        default_factory=list,
        description="Completed checkpoints skipped as corrupt when finding the latest one, newest first "
        "(bounded); each was reported once with a CorruptCheckpointSkipped Warning event.",
    )
    last_failure: FailureInfo | None = Field(
        default=None, description="Root cause of the last failed attempt (kept after it recovered)."
    )
    error: str | None = Field(default=None, description="The last error, for the user (one line).")
    # -- snapshots as resources, periodic savepoints, retention --
    last_periodic_savepoint: str | None = Field(
        default=None, description="When the last periodic savepoint was triggered (RFC 3339)."
    )
    lineages_cleaned: str | None = Field(
        default=None, description="The jobId for which older lineages' checkpoints were last deleted."
    )

    @classmethod
    def parse(cls, raw: object) -> StreamJobStatus:
        """Reads status as stored (unknown keys, e.g. kopf's, are ignored)."""
        return cls.model_validate(raw or {})

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if any."""
        return next((c for c in self.conditions if c.type == type_), None)
