"""Go's durations as minimega prints and parses them (``time.Duration``).

One place for ``time.ParseDuration`` and ``Duration.String``: ``status updates``,
``mesh timeout``, ``vm info``'s uptime, ``host``, ``vm top``, ``qos delay`` and
``cc test-conn`` all show or take durations exactly as Go does.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_MAX_NS = 2**63 - 1


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds.

    Raises:
        ValueError: not a Go duration (or beyond Go's range).
    """
    s = text
    sign = 1
    if s[:1] in ("+", "-") and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(text)
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(text)
        try:
            total += Decimal(m.group(1)) * _UNITS[m.group(2)]
        except InvalidOperation:
            raise ValueError(text) from None
        pos = m.end()
    if total > _MAX_NS:
        raise ValueError(text)
    return sign * int(total)


def _fraction(value: int, digits: int) -> str:
    """``value / 10**digits`` without trailing zeros (Go's ``fmtFrac`` + ``fmtInt``)."""
    whole, frac = divmod(value, 10**digits)
    frac_text = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` of ``ns`` nanoseconds."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fraction(u, 3)}µs"
        return f"{sign}{_fraction(u, 6)}ms"
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def format_seconds(seconds: float) -> str:
    """``format_duration`` of a time in seconds (uptimes, timeouts)."""
    return format_duration(round(seconds * 1e9))
