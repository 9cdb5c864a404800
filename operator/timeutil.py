"""RFC 3339 timestamps as Kubernetes writes them; the only place times are parsed or formatted.

Used by the observers, the planner and the status builders. The clock itself is injected (a
``now`` argument), never read here.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """``2026-01-02T03:04:05.678Z`` (UTC, millisecond precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    """Parses what ``format_time`` or the API server writes; None for None or garbage."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime) -> float | None:
    """Seconds from the timestamp ``text`` to ``now`` (None if unset)."""
    moment = parse_time(text)
    return None if moment is None else (now - moment).total_seconds()
