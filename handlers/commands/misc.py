"""Small commands: ``version``, ``echo``, ``help``, ``clear all``, ``check`` and ``quit``.

``help`` lists every registered handler with 2.8's layout (one line per
pattern, aligned by Go's tabwriter with tab padding) and prints the usage and
long help of the handlers a partial command matches. ``clear all`` runs every
family's ``on_clear_all`` hook in order, as 2.8 runs its list of ``clear``
commands.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers import host
from megabus.handlers.language.command import LanguageError
from megabus.handlers.language.lexer import lex
from megabus.handlers.language.patterns import parse_pattern, pattern_string
from megabus.handlers.node import registry
from megabus.handlers.node.registry import Handler, Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_TABWIDTH = 8


@functools.cache
def version_text() -> str:
    """``megabus <version>``, the shape of 2.8's ``minimega <version>``.

    Cached: reading the installed metadata parses files (about 1 ms), and the
    version cannot change while the process runs.
    """
    try:
        version = importlib.metadata.version("megabus")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"megabus {version}"


@command("version", short="display the minimega version", kind="broadcast")
async def version(ctx: Context, cmd: Command) -> Result:
    """Print the version."""
    return ctx.respond(version_text())


@command("echo [args]...", short="display input text after comment removal")
async def echo(ctx: Context, cmd: Command) -> Result:
    """Print the arguments joined by spaces."""
    return ctx.respond(" ".join(cmd.items("args")))


def tab_table(rows: Sequence[Sequence[str]]) -> str:
    """Go's tabwriter with minwidth 0, tabwidth 8, padding 0, padchar tab.

    Every cell of a row but the last is terminated; each column is padded
    with tabs up to the multiple of 8 at or above its widest cell (so the
    widest cell, if already a multiple of 8, gets no tab at all).
    """
    if not rows:
        return ""
    columns = max(len(r) for r in rows) - 1
    widths = [max((len(r[c]) for r in rows if c < len(r) - 1), default=0) for c in range(columns)]
    out = []
    for row in rows:
        parts = []
        for c, cell in enumerate(row):
            parts.append(cell)
            if c < len(row) - 1:
                cellw = -(-widths[c] // _TABWIDTH) * _TABWIDTH
                parts.append("\t" * -(-(cellw - len(cell)) // _TABWIDTH))
        out.append("".join(parts) + "\n")
    return "".join(out)


def help_short(handlers: Sequence[Handler]) -> str:
    """The command list: every pattern with its handler's short help, sorted."""
    entries = sorted((p, h.short) for h in handlers for p in h.patterns)
    # Go's Fprintln puts a space between operands: "pattern \t :\t short \t"
    rows = [[f"{p} ", " :", f" {short} ", ""] for p, short in entries]
    return "Display help on a command. Here is a list of commands:\n" + tab_table(rows)


def help_long(patterns: Sequence[str], long: str) -> str:
    """``Usage:`` with each pattern, then the long help."""
    lines = ["Usage:\n"]
    lines.extend(f"\t{pattern_string(parse_pattern(p))}\n" for p in patterns)
    return "".join(lines) + "\n" + long.strip()


def _has_long(h: Handler) -> bool:
    # the registry copies short into long when a handler has none
    return h.long.strip() != h.short.strip()


def help_text(words: Sequence[str]) -> str:
    """2.8's ``minicli.Help`` for the given words."""
    text = " ".join(words)
    try:
        items = lex(text)
    except LanguageError as err:
        return f"unable to parse `{text}`: {err}"
    if not items:
        return help_short(registry.HANDLERS)
    from megabus.handlers.node.dispatch import load_grammar

    matches = [h for h in load_grammar().help_matches(text) if isinstance(h, Handler)]
    if not matches:
        return f"no help entry for `{text}`"
    if len(matches) == 1:
        return help_long(matches[0].patterns, matches[0].long)
    with_long = [h for h in matches if _has_long(h)]
    if len(with_long) == 1:
        patterns = [p for h in matches for p in h.patterns]
        return help_long(patterns, with_long[0].long)
    return help_short(matches)


@command(
    "help [command]...",
    short="show command help",
    long="""Show help on a command. If called with no arguments, show a summary of all
commands.""",
)
async def help_(ctx: Context, cmd: Command) -> Result:
    """List commands, or show the help of the commands matching the words."""
    return ctx.respond(help_text(cmd.items("command")))


@command(
    "clear all",
    short="reset all resettable",
    long="""Runs all the "clear ..." handlers on the local instance -- as close to nuke as
you can get without restarting minimega. Restarting minimega is preferable.""",
)
async def clear_all(ctx: Context, cmd: Command) -> Result:
    """Run every family's clear-all hook, lowest order first."""
    await run_clear_all(ctx)
    return None


async def run_clear_all(ctx: Context) -> None:
    """Run the ``on_clear_all`` hooks in order (stable for equal orders)."""
    for _order, hook in sorted(registry.CLEAR_ALL, key=lambda h: h[0]):
        await hook(ctx)


@command(
    "check",
    short="check that all external executables dependencies exist",
    long="""megabus maintains a list of external programs that it depends on, such as
qemu, and of the kernel features it needs. Calling check will attempt to find
each of these executables in the available path and check to make sure they
meet the minimum version requirements, and look for the kernel features.
Returns errors for all missing executables, all minimum versions not met and
all missing kernel features.""",
)
async def check(ctx: Context, cmd: Command) -> Result:
    """2.8's ``check``: nothing when all is well, else one error line per problem."""
    errors = await host.check(ctx.state.bridges)
    if errors:
        raise CommandError("\n".join(errors))
    return None


@command(
    "quit [delay]",
    short="quit minimega",
    long="""Quit megabus. An optional integer argument X allows deferring the quit call
for X seconds. This is useful for telling a mesh of nodes to quit.

quit without a delay answers nothing and the node exits; with a delay it
answers "quitting after X seconds". Other nodes see the node leave the mesh
when its heartbeats stop.""",
)
async def quit_(ctx: Context, cmd: Command) -> Result:
    """Stop this node, now or after ``delay`` seconds (the node shuts down in order)."""
    done = ctx.state.quit_requested
    if "delay" not in cmd.string_args:
        # after this answer has gone out (the node drains its requests while stopping)
        done.set()
        return None
    text = cmd.arg("delay")
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    delay = int(text)
    asyncio.get_running_loop().call_later(max(delay, 0), done.set)
    return ctx.respond(f"quitting after {delay} seconds")
