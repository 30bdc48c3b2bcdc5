"""Moments typed on the command line: relative forms, ISO dates and times, and refusals."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from atomicscan.errors import UsageError
from atomicscan.history.when import MAX_WHEN_CHARS, parse_when

NOW = dt.datetime(2026, 3, 31, 12, 30, 15, tzinfo=dt.UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("  NOW ", NOW),
        ("today", utc(2026, 3, 31)),
        ("yesterday", utc(2026, 3, 30)),
        ("3 weeks ago", utc(2026, 3, 10, 12, 30, 15)),
        ("2 days ago", utc(2026, 3, 29, 12, 30, 15)),
        ("1 day ago", utc(2026, 3, 30, 12, 30, 15)),
        ("an hour ago", utc(2026, 3, 31, 11, 30, 15)),
        ("a minute ago", utc(2026, 3, 31, 12, 29, 15)),
        ("90 minutes ago", utc(2026, 3, 31, 11, 0, 15)),
        ("45 seconds ago", utc(2026, 3, 31, 12, 29, 30)),
        ("0 days ago", NOW),
        ("3  Weeks   Ago", utc(2026, 3, 10, 12, 30, 15)),
        ("3weeks ago", utc(2026, 3, 10, 12, 30, 15)),
        ("1 month ago", utc(2026, 2, 28, 12, 30, 15)),  # calendar months, day clamped
        ("2 months ago", utc(2026, 1, 31, 12, 30, 15)),
        ("13 months ago", utc(2025, 2, 28, 12, 30, 15)),
        ("1 year ago", utc(2025, 3, 31, 12, 30, 15)),
        ("2026-11-01", utc(2026, 11, 1)),
        ("2026-11-01T10:00", utc(2026, 11, 1, 10)),  # no zone: UTC
        ("2026-11-01 10:00:00", utc(2026, 11, 1, 10)),
        ("2026-11-01 10:00:00+02:00", utc(2026, 11, 1, 8)),
        ("2026-11-01T10:00:00-05:30", utc(2026, 11, 1, 15, 30)),
        ("2026-11-01T10:00Z", utc(2026, 11, 1, 10)),
        ("2026-11-01t10:00z", utc(2026, 11, 1, 10)),
        ("2026-11-01T10:00:00.250+00:00", utc(2026, 11, 1, 10, 0, 0, 250000)),
    ],
)
def test_parse_when(text: str, expected: dt.datetime) -> None:
    moment = parse_when(text, now=NOW)
    assert moment == expected
    assert moment.utcoffset() == dt.timedelta(0)


def test_results_are_utc_even_when_now_is_in_another_zone_or_naive() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    assert parse_when("now", now=NOW.astimezone(paris)).tzinfo == dt.UTC
    assert parse_when("today", now=dt.datetime(2026, 3, 31, 1, 0, tzinfo=paris)) == utc(2026, 3, 30)
    assert parse_when("now", now=dt.datetime(2026, 3, 31, 12, 0)) == utc(2026, 3, 31, 12)


def test_a_month_back_from_a_leap_day_and_a_year_back_to_one() -> None:
    leap = utc(2024, 2, 29, 9)
    assert parse_when("1 year ago", now=leap) == utc(2023, 2, 28, 9)
    assert parse_when("12 months ago", now=leap) == utc(2023, 2, 28, 9)
    assert parse_when("1 month ago", now=utc(2024, 3, 31)) == utc(2024, 2, 29)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "later",
        "3 weeks",
        "weeks ago",
        "-3 days ago",
        "3 fortnights ago",
        "in 3 days",
        "1.5 days ago",
        "2026-13-01",
        "2026-02-30",
        "2026-11-01T25:00",
        "01/11/2026",
        "20261101",
        "2026-11-01T10:00+99:00",
        "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0660\u0661",  # Arabic-Indic digits
        "9999999 days ago",
        "999999 years ago",
        "999999 weeks ago",
        "0001-01-01T00:00+05:00",  # out of range once in UTC
        "9999-12-31T23:00-05:00",
        "now\x1b[2J",
        "now\nrm -rf /",
        "\x00",
        "1" * 10_000,
        "3 " + "weeks " * 1000 + "ago",
        "x" * (MAX_WHEN_CHARS + 1),
    ],
)
def test_parse_when_refuses_with_one_safe_line(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_when(text, now=NOW)
    message = str(raised.value)
    assert message.startswith("cannot read")
    assert "\n" not in message
    assert "\x1b" not in message
    assert "\x00" not in message
    assert len(message) < 300


def test_parse_when_on_random_input_gives_a_utc_time_or_a_usage_error() -> None:
    rng = random.Random(2026)
    seeds = ["2026-11-01 10:00:00+02:00", "2026-11-01T10:00Z", "3 weeks ago", "yesterday"]
    alphabet = "0123456789-:T Z+.agoweksdyn\x00\n\u200b"
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(3000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 3)):
            position = rng.randrange(len(text) + 1)
            action = rng.random()
            if action < 0.4 and position < len(text):
                del text[position]
            elif action < 0.7 and position < len(text):
                text[position] = rng.choice(alphabet)
            else:
                text.insert(position, rng.choice(alphabet))
        try:
            moment = parse_when("".join(text), now=NOW)
        except UsageError as refused:
            assert "\n" not in str(refused)
            outcomes["refused"] += 1
            continue
        outcomes["accepted"] += 1
        assert moment.utcoffset() == dt.timedelta(0)
    # Both paths are exercised: some mutations still read as times, most do not.
    assert outcomes["accepted"] > 100
    assert outcomes["refused"] > 100
