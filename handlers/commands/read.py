"""``read <file> [check,]``: run a file of commands as if typed.

Each line runs through ``ctx.run_line`` (so the dispatcher records it, and
``read`` itself is never recorded) in the namespace ``read`` started in; a
line that switches the namespace moves the rest of the file with it, as 2.8
does. An invalid line stops the file with ``<file>:<line> <error>``; a command
that fails does not. ``check`` only compiles the lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.command import Command, LanguageError
from megabus.handlers.language.goerrors import go_errno_text
from megabus.handlers.node.progress import progress
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: minicli ``Source`` of a command that came through ``mesh send``.
SOURCE_MESHAGE = "meshage"


def _read_lines(path: str) -> list[str]:
    with open(path, "rb") as fh:
        data = fh.read()
    # bufio.Scanner's ScanLines: split on \n, drop one trailing \r per line
    lines = data.decode(errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _compile(line: str) -> Command | None:
    # imported here: the dispatcher imports every family, this one included
    from megabus.handlers.node.dispatch import load_grammar

    return load_grammar().compile(line)


def _chain(cmd: Command | None) -> list[Command]:
    out = []
    while cmd is not None:
        out.append(cmd)
        cmd = cmd.subcommand
    return out


def _switches_to(cmd: Command) -> str:
    """The namespace a line makes active (``namespace X`` with nothing after), or ``""``."""
    for c in _chain(cmd):
        if c.pattern.startswith("namespace ") and c.subcommand is None:
            return c.arg("name")
    return ""


@command(
    "read <file> [check,]",
    short="read and execute a command file",
    long="""Read a command file and execute it. This has the same behavior as if you typed
the file in manually. read stops if it reads an invalid command. read does not
stop if a command returns an error. Nested reads are not permitted.

To prevent issues with another script changing the namespace and commands being
run in a different namespace than originally intended, read records the active
namespace when it starts and prepends that namespace to all commands that it
reads from the file. If it reads a command that would change the active
namespace, read updates its state so that the new namespace is prepended
instead.

If the optional argument check is specified then read doesn't execute any of
the commands in the file. Instead, it checks that all the commands are
syntactically valid. This can identify mistyped commands in scripts before you
read them. It cannot check for semantic errors (e.g. killing a non-existent
VM). The check stops at the first invalid command.""",
)
async def read(ctx: Context, cmd: Command) -> Result:
    """Run (or only check) every line of a file, one batch per line."""
    cmd.record = False
    if ctx.source == SOURCE_MESHAGE:
        raise CommandError(f"cannot run `{cmd.original}` via meshage")
    path = cmd.arg("file")
    check = cmd.flag("check")
    try:
        lines = await asyncio.to_thread(_read_lines, path)
    except IsADirectoryError:
        raise CommandError(f"read {path}: is a directory") from None
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None
    namespace = ctx.namespace
    name = os.path.basename(path)
    async with progress(ctx, "read") as report:
        for number, line in enumerate(lines, start=1):
            report.update(f"{name}: line {number} of {len(lines)}", number / len(lines))
            try:
                compiled = _compile(line)
            except LanguageError as err:
                raise CommandError(f"{os.path.basename(path)}:{number} {err}") from None
            if compiled is None:
                if not check and line.strip().startswith("#"):
                    await ctx.run_line(line, namespace)  # comments are recorded
                continue
            if any(c.pattern.startswith("read ") for c in _chain(compiled)):
                raise CommandError(
                    f"{os.path.basename(path)}:{number} cannot run nested `read` commands"
                )
            if check:
                continue
            switch = _switches_to(compiled)
            for batch in await ctx.run_line(line, namespace):
                await ctx.emit(batch)
            if switch:
                logger.info("read switching to namespace `%s`", switch)
                namespace = switch
    return None
