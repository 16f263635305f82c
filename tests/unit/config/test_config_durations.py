"""Go duration parsing and printing, checked against values Go's time package gives."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from appliance.config.durations import DurationError, format_duration, parse_duration, parse_duration_ns


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("300ms", timedelta(milliseconds=300)),
        ("1.5h", timedelta(minutes=90)),
        ("2h45m", timedelta(hours=2, minutes=45)),
        ("1h0m0s", timedelta(hours=1)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("+5s", timedelta(seconds=5)),
        ("-1.5h", -timedelta(minutes=90)),
        ("2160h", timedelta(days=90)),
        ("1h1m1s1ms1us", timedelta(hours=1, minutes=1, seconds=1, milliseconds=1, microseconds=1)),
        ("3\u00b5s", timedelta(microseconds=3)),
        ("3\u03bcs", timedelta(microseconds=3)),
        ("0s", timedelta(0)),
        ("1m30s", timedelta(seconds=90)),
    ],
)
def test_valid(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_nanoseconds_are_exact() -> None:
    assert parse_duration_ns("1.000000001s") == 1_000_000_001
    assert parse_duration_ns("1ns") == 1
    assert parse_duration_ns("2562047h47m16.854775807s") == (1 << 63) - 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'invalid duration ""'),
        ("1", 'missing unit in duration "1"'),
        ("1d", 'unknown unit "d" in duration "1d"'),
        ("h", 'invalid duration "h"'),
        (".s", 'invalid duration ".s"'),
        ("1h 30m", 'unknown unit "h " in duration "1h 30m"'),
        ("-", 'invalid duration "-"'),
        ("5 minutes", 'unknown unit " minutes"'),
        ("2562047h47m16.854775808s", "too large"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert message in str(caught.value)


def test_no_day_unit_hint() -> None:
    with pytest.raises(DurationError, match=re.escape('write days as hours, e.g. "24h"')):
        parse_duration("7d")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=90), "1h30m0s"),
        (timedelta(hours=100), "100h0m0s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(microseconds=1), "1\u00b5s"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(minutes=5), "5m0s"),
        (-timedelta(seconds=3), "-3s"),
    ],
)
def test_format_like_go(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
