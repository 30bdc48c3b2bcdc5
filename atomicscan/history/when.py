"""Moments typed on the command line (``--at``, ``--since``, ``--until``) read as UTC times.

Accepted, case and spacing aside:

- ``now``; ``today`` and ``yesterday``: midnight UTC at the start of that day, so
  ``--since yesterday --until today`` is the whole of yesterday;
- ``N UNIT ago`` (``N`` a number, or ``a``/``an``), ``UNIT`` one of second, minute, hour,
  day, week, month, year, singular or plural (``3 weeks ago``, ``an hour ago``). Months and
  years are calendar ones: ``1 month ago`` on 31 March is 28 (or 29) February, same time;
- an ISO 8601 date or date-time: ``2026-11-01``, ``2026-11-01T10:00``,
  ``2026-11-01 10:00:00+02:00``, ``2026-11-01T10:00Z``. A date is its midnight; **a time
  without a zone is UTC** (not the local zone: the history is recorded in UTC and read the
  same way on every host).

Anything else is a :class:`~atomicscan.errors.UsageError` with one line.
"""

from __future__ import annotations

import datetime as dt
import re

from atomicscan.errors import UsageError
from atomicscan.safetext import printable

#: The longest input looked at: no moment is written longer than this.
MAX_WHEN_CHARS = 64

# Bounded input and no nested repetition: this pattern runs in linear time.
_RELATIVE = re.compile(
    r"(?P<count>[0-9]{1,6}|an?|one) ?(?P<unit>second|minute|hour|day|week|month|year)s? ago"
)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_HELP = (
    "use an ISO date or date-time (2026-11-01, 2026-11-01T10:00, no zone means UTC) "
    "or 'N minutes/hours/days/weeks/months ago', 'yesterday', 'today', 'now'"
)


def _not_a_time(text: str, why: str = "") -> UsageError:
    short = text if len(text) <= 40 else text[:40] + "..."
    reason = f" ({why})" if why else ""
    return UsageError(f"cannot read '{printable(short)}' as a time{reason}: {_HELP}")


def _months_back(moment: dt.datetime, months: int) -> dt.datetime:
    """``moment`` that many calendar months earlier, the day clamped to the month's end."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    if year < dt.MINYEAR:
        raise ValueError("before year 1")
    month += 1
    next_month = dt.date(year + 1, 1, 1) if month == 12 else dt.date(year, month + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def _relative(match: re.Match[str], now: dt.datetime) -> dt.datetime:
    count_text = match["count"]
    count = 1 if count_text in ("a", "an", "one") else int(count_text)
    unit = match["unit"]
    if unit == "month":
        return _months_back(now, count)
    if unit == "year":
        return _months_back(now, count * 12)
    return now - dt.timedelta(seconds=count * _UNIT_SECONDS[unit])


def _iso(text: str) -> dt.datetime | None:
    # fromisoformat accepts forms beyond these; only plain ASCII dates and times get to it.
    if not text.isascii() or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.+\-Z]*)?",
                                               text, flags=re.IGNORECASE):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.upper())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        # Near year 1 or 9999 a zone can carry the time out of range: OverflowError.
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def parse_when(text: str, *, now: dt.datetime) -> dt.datetime:
    """The moment ``text`` names, as an aware UTC datetime; relative forms count from ``now``.

    A naive ``now`` is taken as UTC.
    """
    if len(text) > MAX_WHEN_CHARS:
        raise _not_a_time(text, f"longer than {MAX_WHEN_CHARS} characters")
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    words = " ".join(text.split()).lower()
    if words == "now":
        return now
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        if words == "today":
            return midnight
        if words == "yesterday":
            return midnight - dt.timedelta(days=1)
        match = _RELATIVE.fullmatch(words)
        if match:
            return _relative(match, now)
    except (OverflowError, ValueError):
        raise _not_a_time(text, "too far back") from None
    moment = _iso(text.strip())
    if moment is None:
        raise _not_a_time(text)
    return moment
