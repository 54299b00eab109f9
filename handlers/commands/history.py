"""``history``, ``clear history`` and ``write``: the node's command history.

The dispatcher records each command (minicli's rules: valid commands and
comments, ``read`` replaced by the lines it ran); these commands show, clear
and save that list, joined by newlines as ``minicli.History`` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)


def history_text(ctx: Context) -> str:
    """The history as minicli prints it: one command per line, no final newline."""
    return "\n".join(ctx.state.history)


@command(
    "history",
    short="show command history",
    long="""history displays a list of all the commands that have been invoked since
minimega started on this host, or since the last time the history was cleared.
History includes only valid commands and comments. Invalid lines and blank
lines are not recorded. There are some commands that interact differently with
history, namely read. Instead of recording the "read" command in the history,
minimega records all the valid commands executed from the read file in the
history. This allows the full execution history to be listed using history.""",
)
async def history(ctx: Context, cmd: Command) -> Result:
    """Print the history."""
    return ctx.respond(history_text(ctx))


@command(
    "clear history",
    short="reset history",
    long='Reset the command history. See "help history" for more information.',
)
async def clear_history(ctx: Context, cmd: Command) -> Result:
    """Empty the history; this command is not recorded either."""
    ctx.state.history.clear()
    cmd.record = False
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


@command(
    "write <file>",
    short="write the command history to a file",
    long="""Write the command history to file. This is useful for handcrafting configs on
the minimega command line and then saving them for later use.""",
)
async def write(ctx: Context, cmd: Command) -> Result:
    """Save the history to a file, replacing it."""
    path = cmd.arg("file")
    try:
        await asyncio.to_thread(_write, path, history_text(ctx))
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None
    return None


@on_clear_all(99)
async def _clear_all(ctx: Context) -> None:
    # 2.8 clears the history last
    ctx.state.history.clear()
