"""Which Events the operator posts: transitions, failures, savepoints, stalls, answers; none per checkpoint.

A steady job posts no Event at all: checkpoint progress goes to ``status.lastCheckpoint``, the
``CheckpointsProgressing`` condition and the ``streamjob_checkpoint_age_seconds`` metric (an Event per
completed checkpoint was ~3,600 Events per job per hour at a 1 s interval). Every reason the planner
and the controller post is listed here with its kind; ``tests/unit/test_operator_events.py`` checks
that the sources post no other and that a steady job posts none.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """Why an Event is worth a user's attention."""

    TRANSITION = "transition"  # the lifecycle state changes (deploy, upgrade, suspend, recover, finish, ...)
    FAILURE = "failure"  # something failed or was refused; always a Warning
    SAVEPOINT = "savepoint"  # a savepoint completed, failed or was skipped
    STALL = "stall"  # checkpoints stopped (or started again) completing
    REQUEST = "request"  # the answer to a user's request (a checkpoint nonce)


REASONS: dict[str, EventKind] = {
    "Deploying": EventKind.TRANSITION,
    "JobRunning": EventKind.TRANSITION,
    "SpecChanged": EventKind.TRANSITION,
    "Upgraded": EventKind.TRANSITION,
    "Rescaling": EventKind.TRANSITION,
    "Rescaled": EventKind.TRANSITION,
    "Redeploying": EventKind.TRANSITION,
    "Redeployed": EventKind.TRANSITION,
    "Suspending": EventKind.TRANSITION,
    "Suspended": EventKind.TRANSITION,
    "Resuming": EventKind.TRANSITION,
    "Resumed": EventKind.TRANSITION,
    "Restarting": EventKind.TRANSITION,
    "Recovered": EventKind.TRANSITION,
    "RollingBack": EventKind.TRANSITION,
    "RolledBack": EventKind.TRANSITION,
    "JobFinished": EventKind.TRANSITION,
    "Deleted": EventKind.TRANSITION,
    "CheckpointsDeleted": EventKind.TRANSITION,
    "LineagesDeleted": EventKind.TRANSITION,
    "AttemptFailed": EventKind.FAILURE,
    "WorkerReplaced": EventKind.FAILURE,
    "JobRestartedInPlace": EventKind.FAILURE,
    "RescaleFallback": EventKind.FAILURE,
    "JobFailed": EventKind.FAILURE,
    "NoState": EventKind.FAILURE,
    "InvalidSpec": EventKind.FAILURE,
    "InvalidSpecChange": EventKind.FAILURE,
    "OperationAborted": EventKind.FAILURE,
    "ActionFailed": EventKind.FAILURE,
    "CancelFailed": EventKind.FAILURE,
    "CheckpointCleanupFailed": EventKind.FAILURE,
    "CheckpointFailed": EventKind.FAILURE,
    "CorruptCheckpointSkipped": EventKind.FAILURE,
    "DisposalRefused": EventKind.FAILURE,
    "LineageCleanupFailed": EventKind.FAILURE,
    "SavepointCompleted": EventKind.SAVEPOINT,
    "SavepointFailed": EventKind.SAVEPOINT,
    "SavepointSkipped": EventKind.SAVEPOINT,
    "SnapshotAbandoned": EventKind.SAVEPOINT,
    "SnapshotDisposed": EventKind.SAVEPOINT,
    "SnapshotsExpired": EventKind.SAVEPOINT,
    "FilesKept": EventKind.SAVEPOINT,
    "CheckpointsStalled": EventKind.STALL,
    "CheckpointsResumed": EventKind.STALL,
    "CheckpointTriggered": EventKind.REQUEST,
}
"""Every Event reason and its kind."""
