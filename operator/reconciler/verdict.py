"""The JobMaster's verdict on an ending attempt: wait for it, and read whether a restart can mend it (pure).

The JobMaster decides how an attempt ends and exits a moment after its workers do: a worker that
failed to load the job exits as soon as the JobMaster says goodbye, while the JobMaster's pod,
which says the failure is final (``worker/protocol/termination.py``, ``PodView.final``), ends
half a second later. Acting on the worker's failure at once would restart a job that must fail;
so while the JobMaster's pod runs, workers that just ended wait for its verdict, a few seconds at
most. Called by ``reconciler.plan`` (a running attempt) and ``reconciler.operations`` (one
starting).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from streamjob.operator.observer.pods import PodView

#: How long workers that exited 0, or failed next to a silent JobMaster, wait for its pod to succeed.
FINISH_GRACE_S = 3.0

#: How long failed workers wait for a live JobMaster pod to end with its verdict (it exits ~0.5 s later).
VERDICT_GRACE_S = 5.0


def final_failure(pods: Sequence[PodView]) -> str | None:
    """The failure of the attempt's JobMaster pod when it ended final (no restart can mend it), else None."""
    return next((p.failure for p in pods if p.is_jobmaster and p.final and p.failure), None)


def awaiting_jobmaster(now: datetime, pods: Sequence[PodView], *, reachable: bool, state: str | None) -> bool:
    """Whether the attempt's end should wait for the JobMaster's verdict this round.

    A JobMaster that reports the job FAILED (``state``) exits at once on Kubernetes: its pod's
    termination message says whether the failure is final. Workers that exited 0, or failed while
    the JobMaster does not answer, may be a bounded job finishing: its pod succeeds a moment later
    (``FINISH_GRACE_S``). Workers that failed while it answers wait for its pod to end
    (``VERDICT_GRACE_S``). Never once the JobMaster pod has ended or failed, nor for workers
    without an end time (not started, being deleted).
    """
    jm = next((p for p in pods if p.is_jobmaster), None)
    if jm is None or jm.failure is not None or jm.succeeded:
        return False
    if reachable and (state or "").upper() == "FAILED":
        return True
    ended = [p for p in pods if not p.is_jobmaster and (p.failure or p.succeeded)]
    if not ended:
        return False
    ages = [(now - p.finished_at).total_seconds() for p in ended if p.finished_at is not None]
    if len(ages) < len(ended):
        return False
    failed = any(p.failure for p in ended)
    grace = VERDICT_GRACE_S if failed and reachable else FINISH_GRACE_S
    return max(ages) < grace
