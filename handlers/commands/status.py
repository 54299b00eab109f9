"""``status updates [frequency]``: how often long commands publish progress.

The value is a Go duration (``5s``, ``1m30s``, ``0`` turns updates off) kept in
``ctx.state.status_frequency`` as seconds, and printed back the way Go's
``time.Duration`` prints (``3s``, ``1m30s``, ``1h0m0s``, ``500ms``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.gotime import format_duration, parse_duration
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

INVALID = "invalid frequency duration provided"


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
