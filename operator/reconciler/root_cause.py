"""The root cause of a failed attempt: kept in status, told in one line and one Warning, its pods kept (pure).

The JobMaster reports what raised (``GET /job``'s ``failure_detail``: exception, message, task,
operator uid, the innermost traceback lines). ``observe`` keeps it in ``status.lastFailure`` as soon as
it is seen, since the JobMaster exits a moment after the job fails; ``attempt_failed`` runs when the
planner acts on the failure: ``status.error`` gets one line naming the cause, a Warning Event
(``AttemptFailed``) the traceback, and the attempt's ended pods are kept (``delete_pods``) for
``Facts.pod_retention_s`` so that ``kubectl logs`` still shows their output; ``sweep`` deletes them
when their time is up, and keeps those of at most ``RETAINED_ATTEMPTS`` failed attempts. Called by
``reconciler.plan``, ``reconciler.operations`` and ``reconciler.operation_starts``.
"""

from __future__ import annotations

from datetime import timedelta

from streamjob.operator.model.status import FailureInfo
from streamjob.operator.reconciler.facts import DeletePods, DeleteRetained, Draft
from streamjob.operator.timeutil import format_time
from streamjob.worker.protocol.rest import FailureDetail

#: Failed attempts whose pods are kept at a time (older ones go first, whatever their time).
RETAINED_ATTEMPTS = 2

#: Longest summary of an exception, ``status.error`` line, and Event message (the API server keeps 1 KiB).
SUMMARY_CHARS = 400
LINE_CHARS = 1000
EVENT_CHARS = 1024


def one_line(text: str, limit: int = LINE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def summarize(detail: FailureDetail) -> str:
    """``ValueError: bad record 42 (operator 'parse', task map (1))``."""
    where = [f"operator '{detail.operator_uid}'"] if detail.operator_uid else []
    where += [f"task {detail.task}"] if detail.task else []
    suffix = f" ({', '.join(where)})" if where else ""
    return one_line(f"{detail.exception}: {detail.message}", SUMMARY_CHARS - len(suffix)) + suffix


def observe(d: Draft) -> None:
    """Keeps the deployed attempt's failure as its JobMaster reports it (before the JobMaster exits)."""
    dep = d.status.deployment
    detail = d.facts.jobmaster.detail
    if dep is None or detail is None:
        return
    last = d.status.last_failure
    if last is not None and last.attempt == dep.attempt and last.exception is not None:
        return
    d.update(
        last_failure=FailureInfo(
            attempt=dep.attempt,
            time=d.now_text,
            summary=summarize(detail),
            exception=detail.exception,
            message=detail.message,
            task=detail.task,
            operator_uid=detail.operator_uid,
            traceback=list(detail.traceback),
        )
    )


def attempt_failed(d: Draft, reason: str, *, final: bool) -> str:
    """Records the failure of the deployed attempt; returns the reason to act on (and show).

    The JobMaster's report of a task's exception names the cause better than a pod's exit code, unless
    the failure is final: then the JobMaster's own message says what to fix. ``status.error`` gets one
    line; the Warning carries the traceback; the attempt's ended pods are marked to be kept.
    """
    dep = d.status.deployment
    if dep is None:
        d.update(error=one_line(reason))
        return reason
    last = d.status.last_failure
    known = last if last is not None and last.attempt == dep.attempt else None
    if known is not None and known.task is not None and not final:
        reason = f"{known.summary} in attempt {dep.attempt}"
    ended = [p.name for p in d.facts.pods_of(dep.attempt) if p.terminated and not p.lost]  # a lost pod has no logs
    keep = d.facts.pod_retention_s > 0 and bool(ended)
    until = d.facts.now + timedelta(seconds=d.facts.pod_retention_s)
    info = (known or FailureInfo(attempt=dep.attempt, time=d.now_text, summary=one_line(reason))).model_copy(
        update={
            "retained_pods": ended if keep else [],
            "retained_until": format_time(until) if keep else None,
        }
    )
    d.update(last_failure=info, error=one_line(reason))
    d.event("AttemptFailed", _event_text(info, reason), warning=True)
    return reason


def _event_text(info: FailureInfo, reason: str) -> str:
    """The reason, then as many of the innermost traceback lines as fit, then where the pods are kept."""
    head = f"attempt {info.attempt} failed: {one_line(reason, 600)}"
    tail = f"\npods kept for `kubectl logs` until {info.retained_until}: {', '.join(info.retained_pods)}"
    tail = tail if info.retained_pods else ""
    room = EVENT_CHARS - len(head) - len(tail) - len("\ntraceback (innermost last):")
    lines: list[str] = []
    for line in reversed(info.traceback):
        if room - len(line) - 1 < 0:
            break
        lines.insert(0, line)
        room -= len(line) + 1
    body = "\ntraceback (innermost last):\n" + "\n".join(lines) if lines else ""
    return (head + body + tail)[:EVENT_CHARS]


def delete_pods(d: Draft, grace_seconds: int) -> DeletePods:
    """Deletes every pod of the job, keeping the ended pods of the attempt that just failed (``attempt_failed``)."""
    last = d.status.last_failure
    dep = d.status.deployment
    if last is None or dep is None or last.attempt != dep.attempt or not last.retained_until:
        return DeletePods(keep_attempt=None, grace_seconds=grace_seconds)
    return DeletePods(
        keep_attempt=None, grace_seconds=grace_seconds, retain_attempt=last.attempt, retain_until=last.retained_until
    )


def sweep(d: Draft) -> None:
    """Deletes retained pods whose time is up, and those of all but the newest ``RETAINED_ATTEMPTS`` attempts."""
    retained = d.facts.retained
    if not retained:
        return
    newest = sorted({p.attempt for p in retained}, reverse=True)[:RETAINED_ATTEMPTS]
    doomed = tuple(
        sorted(p.name for p in retained if p.attempt not in newest or (p.until is not None and p.until <= d.facts.now))
    )
    if doomed:
        d.act(DeleteRetained(doomed))
