"""``status updates [frequency]``: how often long commands publish progress.

The value is a Go duration (``5s``, ``1m30s``, ``0`` turns updates off) kept in
``ctx.state.status_frequency`` as seconds, and printed back the way Go's
``time.Duration`` prints (``3s``, ``1m30s``, ``1h0m0s``, ``500ms``).
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from megabus.handlers.registry import CommandError, Result, command

if TYPE_CHECKING:
    from megabus.cli.language.command import Command
    from megabus.handlers.context import Context

logger = logging.getLogger(__name__)

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
INVALID = "invalid frequency duration provided"


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds.

    Raises:
        ValueError: not a Go duration.
    """
    s = text
    sign = 1
    if s[:1] in "+-" and s:
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
    text = str(whole)
    frac_text = f"{frac:0{digits}d}".rstrip("0")
    return f"{text}.{frac_text}" if frac_text else text


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String``."""
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


@command(
    "status updates [frequency]",
    short="view or set the status update frequency",
    long="""View or set how often status updates should be published by long running
commands.

Long running commands, like launching a VM that requires the VM's disk image to
be transferred, can periodically publish status updates back to the original
caller to show progress.

By default, the status update frequency is 3s. Status updates can be disabled by
setting this value to 0. Otherwise, when setting update frequency, valid Go time
units must be used ("5s", "1m", etc.).""",
)
async def status_updates(ctx: Context, cmd: Command) -> Result:
    """Print or set the status update frequency."""
    if "frequency" not in cmd.string_args:
        freq = ctx.state.status_frequency
        if freq <= 0:
            return ctx.respond("status updates disabled")
        return ctx.respond(f"status update frequency: {format_duration(round(freq * 1e9))}")
    try:
        ns = parse_duration(cmd.arg("frequency"))
    except ValueError:
        raise CommandError(INVALID) from None
    if ns < 0:
        # Go takes a negative period; a period below zero has no meaning here
        raise CommandError(INVALID)
    ctx.state.status_frequency = ns / 1e9
    return None
