"""When a schedule runs next: cron expressions (in a timezone) and fixed periods.

Shared by the client (``nbmodal.Cron`` checks its expression when it is made) and the agent (which runs
deployed functions on their schedules). Cron is the usual five fields, minute hour day-of-month month
day-of-week, with ``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, month and weekday
names (``jan``, ``mon``), 0 or 7 for Sunday, and the macros ``@hourly``, ``@daily`` (``@midnight``),
``@weekly``, ``@monthly``, ``@yearly`` (``@annually``). As in Vixie cron, when both day fields are
restricted a day matching either runs.

Times are wall-clock times in the schedule's timezone (``zoneinfo``), across daylight-saving changes:
a wall time that happens twice (autumn) runs once, at its first occurrence; a wall time that doesn't
exist (spring) runs at the moment the clocks change.

Example::

    cron = CronExpression("0 3 * * *")
    cron.next_after(time.time(), "Europe/Paris")      # unix seconds of the next 03:00 in Paris
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UTC = dt.timezone.utc
# (name, low, high, names) of each field, in order.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
# A cron expression whose days never come (Feb 30) is refused rather than searched for forever.
_SEARCH_DAYS = 366 * 8


class CronError(ValueError):
    """A cron expression or timezone that can't be used; the message names the field at fault."""


def timezone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ``CronError`` naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown timezone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
                        f"'America/New_York'") from None


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; ``CronError`` naming the field at fault when it isn't one."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def __init__(self, text: str) -> None:
        expanded = _MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise CronError(f"invalid cron expression {text!r}: it has {len(parts)} field(s), a cron expression has "
                            f"5 (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', or a macro such as "
                            f"@daily")
        values = [_parse_field(part, field, text) for part, field in zip(parts, _FIELDS)]
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "minutes", tuple(sorted(values[0])))
        object.__setattr__(self, "hours", tuple(sorted(values[1])))
        object.__setattr__(self, "days", frozenset(values[2]))
        object.__setattr__(self, "months", frozenset(values[3]))
        object.__setattr__(self, "weekdays", frozenset(d % 7 for d in values[4]))
        object.__setattr__(self, "days_restricted", parts[2] != "*")
        object.__setattr__(self, "weekdays_restricted", parts[4] != "*")
        if not any(self._day_matches(dt.date(2024, month, day)) for month in self.months
                   for day in range(1, calendar.monthrange(2024, month)[1] + 1)):
            raise CronError(f"invalid cron expression {text!r}: no day matches its day-of-month and month fields")

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, after: float, tz: str = "UTC") -> float:
        """The first time (unix seconds) strictly after ``after`` that the expression matches in ``tz``."""
        zone = timezone(tz)
        start = dt.datetime.fromtimestamp(after, zone).replace(tzinfo=None, second=0, microsecond=0)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = dt.datetime.combine(day, dt.time(hour, minute))
                        if wall < start:
                            continue
                        when = _wall_to_unix(wall, zone)
                        if when > after:
                            return when
            day += dt.timedelta(days=1)
        raise CronError(f"cron expression {self.text!r} has no time in the next {_SEARCH_DAYS // 366} years")


def _parse_field(part: str, field: tuple, text: str) -> set[int]:
    name, low, high, names = field
    values: set[int] = set()
    for item in part.lower().split(","):
        where = f"invalid cron expression {text!r}: {name} field {part!r}"
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{where}: the step after '/' must be a whole number of at least 1")
            step = int(step_text)
        if body == "*":
            first, last = low, high if name != "day of week" else 6
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _value(a, name, low, high, names, where), _value(b, name, low, high, names, where)
            if first > last:
                raise CronError(f"{where}: the range {body!r} runs backwards")
        else:
            first = _value(body, name, low, high, names, where)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def _value(token: str, name: str, low: int, high: int, names: dict[str, int], where: str) -> int:
    if token in names:
        return names[token]
    if not token.isdigit():
        known = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"{where}: {token!r} is not a number from {low} to {high}{known}")
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"{where}: {value} is out of range {low}-{high}")
    return value


def _wall_to_unix(wall: dt.datetime, zone: ZoneInfo) -> float:
    """A wall-clock time in ``zone`` as unix seconds: an ambiguous one at its first occurrence, one that
    doesn't exist (the clocks jumped over it) at the moment of the jump."""
    when = wall.replace(tzinfo=zone, fold=0).timestamp()
    if _exists(wall, zone):
        return when
    # In a spring-forward gap: the jump came at the gap's first wall minute, on the clock before it.
    gap_start = wall
    while not _exists(gap_start - dt.timedelta(minutes=1), zone):
        gap_start -= dt.timedelta(minutes=1)
    offset_before = wall.replace(tzinfo=zone, fold=0).utcoffset() or dt.timedelta()
    return (gap_start.replace(tzinfo=_UTC) - offset_before).timestamp()


def _exists(wall: dt.datetime, zone: ZoneInfo) -> bool:
    return dt.datetime.fromtimestamp(wall.replace(tzinfo=zone, fold=0).timestamp(), zone).replace(tzinfo=None) == wall


def period_next(anchor: float, after: float, seconds: float, months: int = 0) -> float:
    """The first time strictly after ``after`` of a period that started at ``anchor`` (unix seconds):
    every ``months`` calendar months plus ``seconds`` (``Period(days=1)``: every 86400 s)."""
    if seconds <= 0 and months <= 0:
        raise ValueError("a Period must be longer than zero")
    if months == 0:
        if after < anchor:
            return anchor + seconds
        steps = int((after - anchor) // seconds) + 1
        return anchor + steps * seconds
    start = dt.datetime.fromtimestamp(anchor, _UTC)
    n = 1
    while True:
        when = _add_months(start, months * n).timestamp() + seconds * n
        if when > after:
            return when
        n += 1


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    month = when.month - 1 + months
    year, month = when.year + month // 12, month % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))
