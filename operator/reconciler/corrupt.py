"""Reporting corrupt checkpoints that storage discovery skipped: one Warning each, remembered in status (pure).

Discovery (``worker/storage/discovery.py``) never restores a ``chk-<n>`` whose ``_metadata`` is
corrupt or poisoned: it takes the next older one, which may silently replay (and, with
non-transactional sinks, duplicate) everything after it. The user must learn that, once: every
round sees the same skipped checkpoint again, so ``status.corruptCheckpoints`` remembers what was
reported and only a newly found one gets a ``CorruptCheckpointSkipped`` Warning. Called by
``reconciler.plan`` every round with the facts the observer gathered.
"""

from __future__ import annotations

from streamjob.operator.model.status import CorruptCheckpoint, SnapshotInfo
from streamjob.operator.reconciler.facts import Draft

REASON = "CorruptCheckpointSkipped"

#: Reported checkpoints kept in status. Only the newest this many skipped ones are considered, so that a
#: storage full of poison cannot push reported entries out of status and have them reported again.
MAX_REMEMBERED = 20


def instead(latest: SnapshotInfo | None) -> str:
    """What is restored in place of the skipped checkpoints, in words."""
    if latest is None:
        return "nothing older can be restored (the job would start with no state of this lineage)"
    if latest.kind == "checkpoint":
        return f"checkpoint {latest.id} ({latest.location}) is used instead"
    return f"the savepoint the job started from ({latest.location}) is used instead"


def message(skipped: CorruptCheckpoint, latest: SnapshotInfo | None) -> str:
    """The event's text: which checkpoint, where, why, and what is used instead."""
    return (
        f"checkpoint {skipped.id} of job {skipped.job_id} at {skipped.location} is skipped: {skipped.reason}; "
        f"{instead(latest)}"
    )


def report_corrupt(d: Draft) -> None:
    """Emits a Warning for each skipped checkpoint not yet in ``status.corruptCheckpoints`` and records it."""
    f = d.facts
    current = [s for job_id in sorted(f.skipped) for s in f.skipped[job_id]]
    current = sorted(current, key=lambda s: (s.job_id != d.status.job_id, -s.id))[:MAX_REMEMBERED]
    known = {c.location for c in d.status.corrupt_checkpoints}
    new = [s for s in current if s.location not in known]
    if not new:
        return
    for s in new:
        d.event(REASON, message(s, f.latest_of(s.job_id)), warning=True)
    seen = {s.location for s in current}
    stamped = [s.model_copy(update={"reported_at": d.now_text}) for s in new]
    still = [c for c in d.status.corrupt_checkpoints if c.location in seen]
    older = [c for c in d.status.corrupt_checkpoints if c.location not in seen]
    d.update(corrupt_checkpoints=[*stamped, *still, *older][:MAX_REMEMBERED])
