"""Five-field cron expressions (UTC) for periodic savepoints: parse and find the next time (pure).

``minute hour day-of-month month day-of-week`` with ``*``, numbers, ``a-b`` ranges, ``,`` lists and
``/n`` steps; day-of-week 0-7 (0 and 7 are Sunday). As in cron, when both day fields are restricted
a day matches either. Called by ``validation`` (the message for a bad expression) and by
``reconciler.periodic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
#: How far ahead the next time is searched (a 29 February schedule fires within 8 years).
HORIZON_DAYS = 366 * 8


class CronError(ValueError):
    """An expression that is not five valid cron fields; the message names the field."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # cron: 0 = Sunday
        by_day = moment.day in self.days
        by_weekday = weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching minute strictly after ``moment`` (None if none within ``HORIZON_DAYS``)."""
        t = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = moment + timedelta(days=HORIZON_DAYS)
        while t <= end:
            if t.month not in self.months or not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None


def _values(text: str, name: str, low: int, high: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, stop = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, stop = int(a), int(b)
            else:
                start = int(base)
                stop = high if step_text else start
        except ValueError:
            raise CronError(f"{name} field {text!r}: not a number, range, list or step") from None
        if step < 1 or not low <= start <= stop <= high:
            raise CronError(f"{name} field {text!r}: values must lie in {low}-{high} (ranges ascending, step >= 1)")
        out.update(range(start, stop + 1, step))
    return frozenset(out)


def parse_cron(expression: str) -> Cron:
    """Parses ``expression``; raises ``CronError`` naming the bad field."""
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        raise CronError(f"{expression!r} has {len(fields)} fields; five are needed: minute hour day month weekday")
    sets = [_values(text, name, low, high) for text, (name, low, high) in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(7 % 7 if d == 7 else d for d in sets[4])
    cron = Cron(sets[0], sets[1], sets[2], sets[3], weekdays, fields[2] == "*", fields[4] == "*")
    if cron.next_after(datetime(2000, 1, 1)) is None:
        raise CronError(f"{expression!r} never fires (no such day)")
    return cron
