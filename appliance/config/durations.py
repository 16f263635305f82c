"""Go-style durations ("300ms", "1.5h", "2h45m"), parsed and printed the way Go's time package does."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

# Go's units, in nanoseconds. Both micro signs are accepted, as Go does.
_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = (1 << 63) - 1  # Go's Duration is an int64 count of nanoseconds
_UNIT_HINT = "valid units are ns, us, ms, s, m, h"


class DurationError(ValueError):
    """A string that Go's time.ParseDuration would reject."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string; raise DurationError with a readable reason when it is invalid.

    Accepts exactly what Go accepts: an optional sign, then one or more decimal numbers each with a
    unit ("1h30m", "1.5h", ".5s", "300ms"), or the bare "0". There is no "d" unit.
    Sub-microsecond parts are truncated because timedelta counts microseconds.
    """
    ns = parse_duration_ns(text)
    return timedelta(microseconds=ns // 1000) if ns >= 0 else -timedelta(microseconds=(-ns) // 1000)


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds (see parse_duration)."""
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError(f'invalid duration "{text}"')
    total = Fraction(0)
    while s:
        if not (s[0] == "." or (s[0].isascii() and s[0].isdigit())):
            raise DurationError(f'invalid duration "{text}"')
        i = _digits_end(s, 0)
        whole = s[:i]
        fraction = ""
        if i < len(s) and s[i] == ".":
            j = _digits_end(s, i + 1)
            fraction = s[i + 1 : j]
            i = j
        if not whole and not fraction:
            raise DurationError(f'invalid duration "{text}"')
        k = i
        while k < len(s) and s[k] != "." and not (s[k].isascii() and s[k].isdigit()):
            k += 1
        unit = s[i:k]
        if not unit:
            raise DurationError(f'missing unit in duration "{text}" ({_UNIT_HINT})')
        scale = _UNITS.get(unit)
        if scale is None:
            hint = '; Go durations have no "d": write days as hours, e.g. "24h"' if unit == "d" else ""
            raise DurationError(f'unknown unit "{unit}" in duration "{text}" ({_UNIT_HINT}{hint})')
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * scale
        if total > _MAX_NS + (1 if negative else 0):
            raise DurationError(f'invalid duration "{text}" (too large)')
        s = s[k:]
    ns = int(total)  # Go truncates the fractional nanoseconds
    return -ns if negative else ns


def _digits_end(s: str, start: int) -> int:
    i = start
    while i < len(s) and s[i].isascii() and s[i].isdigit():
        i += 1
    return i


def format_duration(value: timedelta) -> str:
    """Print a timedelta the way Go's Duration.String() does: "1h0m0s", "1.5s", "300ms", "0s"."""
    ns = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000
    return format_duration_ns(ns)


def format_duration_ns(ns: int) -> str:
    """Go's Duration.String() for an integer count of nanoseconds."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        # Below one second Go picks the largest unit that keeps a non-zero integer part.
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    width = len(str(size)) - 1
    return f"{whole}.{str(frac).rjust(width, '0').rstrip('0')}"
