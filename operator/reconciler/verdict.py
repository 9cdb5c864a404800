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
from streamjob.worker.protocol.rest import JobState

#: How long ended workers wait for a live JobMaster pod to end with its verdict. It exits about half a
#: second after them, later when its last storage writes (retention) take a while: a JobMaster that has
#: lost its workers always ends on its own, so waiting longer only delays noticing a hung one.
VERDICT_GRACE_S = 10.0


def final_failure(pods: Sequence[PodView]) -> str | None:
    """The failure of the attempt's JobMaster pod when it ended final (no restart can mend it), else None."""
    return next((p.failure for p in pods if p.is_jobmaster and p.final and p.failure), None)


def awaiting_jobmaster(now: datetime, pods: Sequence[PodView], *, reachable: bool, state: JobState | None) -> bool:
    """Whether the attempt's end should wait for the JobMaster's verdict this round.

    A JobMaster that reports the job FAILED (``state``) exits at once on Kubernetes: its pod's
    termination message says whether the failure is final. Workers that exited 0, or lost a
    JobMaster that closed its API, may be a bounded job finishing: its pod succeeds a moment later.
    Workers that failed may have failed in a way the JobMaster calls final. So ended workers wait
    ``VERDICT_GRACE_S`` for its pod to end; never once it has ended or failed, nor for workers
    without an end time (not started, being deleted).
    """
    jm = next((p for p in pods if p.is_jobmaster), None)
    if jm is None or jm.failure is not None or jm.succeeded:
        return False
    if reachable and state == JobState.FAILED:
        return True
    ended = [p for p in pods if not p.is_jobmaster and (p.failure or p.succeeded)]
    if not ended:
        return False
    ages = [(now - p.finished_at).total_seconds() for p in ended if p.finished_at is not None]
    if len(ages) < len(ended):
        return False
    return max(ages) < VERDICT_GRACE_S
