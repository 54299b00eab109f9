"""``shell`` and ``background``: run a program on the node, without a shell.

The words after the command are the argument list, so nothing is
re-interpreted by ``/bin/sh``. Errors keep Go's ``os/exec`` texts, which 2.8
passes through (``exec: "x": executable file not found in $PATH``,
``exit status 1``). ``background`` returns at once; a task owned by this
module waits for the process, so it never becomes a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text
from megabus.handlers.language.lexer import go_quote
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)


def look_path(name: str) -> str:
    """Go's ``exec.LookPath``: the executable's path, or 2.8's error text.

    Raises:
        CommandError: ``exec: "name": executable file not found in $PATH``,
            or a stat / permission error for a name with a slash.
    """
    if not name:
        raise CommandError('exec: "": executable file not found in $PATH')
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as err:
            raise CommandError(
                f"exec: {go_quote(name)}: stat {name}: {go_errno_text(err)}"
            ) from None
        if not os.path.isfile(name) or not st.st_mode & 0o111:
            raise CommandError(f"exec: {go_quote(name)}: permission denied")
        return name
    found = shutil.which(name)
    if found is None:
        raise CommandError(f"exec: {go_quote(name)}: executable file not found in $PATH")
    return found


def exit_text(code: int) -> str:
    """Go's ``ExitError`` text for a return code (negative: killed by a signal)."""
    if code < 0:
        try:
            name = signal.strsignal(-code) or str(-code)
        except ValueError:
            name = str(-code)
        return f"signal: {name[:1].lower()}{name[1:]}"
    return f"exit status {code}"


async def _start(argv: list[str], *, capture: bool) -> asyncio.subprocess.Process:
    path = look_path(argv[0])
    pipe = asyncio.subprocess.PIPE
    try:
        return await asyncio.create_subprocess_exec(
            path,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe if capture else asyncio.subprocess.STDOUT,
        )
    except OSError as err:
        raise CommandError(f"fork/exec {path}: {go_errno_text(err)}") from None


@command(
    "shell <command>...",
    short="execute a command",
    long="""Execute a command under the credentials of the running user.

Commands run until they complete or error, so take care not to execute a command
that does not return.""",
)
async def shell(ctx: Context, cmd: Command) -> Result:
    """Run the program, answer with its stdout (stderr becomes the error)."""
    argv = cmd.items("command")
    logger.info("starting: %s", argv)
    proc = await _start(argv, capture=True)
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise CommandError(exit_text(proc.returncode))
    resp = ctx.respond(out.decode(errors="replace"))
    resp.error = err.decode(errors="replace")
    return resp


@command(
    "background <command>...",
    short="execute a command in the background",
    long="""Execute a command under the credentials of the running user.

Commands run in the background and control returns immediately. Any output is
logged at the "info" level.""",
)
async def background(ctx: Context, cmd: Command) -> Result:
    """Start the program and return; its output goes to the log at info."""
    argv = cmd.items("command")
    logger.info("starting in the background: %s", argv)
    proc = await _start(argv, capture=False)
    # the node's set: this node's processes die with it, and only this node's
    ctx.state.background.spawn(_reap(proc, argv), f"pid{proc.pid}")
    return None


async def _reap(proc: asyncio.subprocess.Process, argv: list[str]) -> None:
    try:
        assert proc.stdout is not None
        async for line in proc.stdout:
            logger.info("%s: %s", argv[0], line.decode(errors="replace").rstrip("\n"))
        await proc.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    logger.info("command %s exited: %s", argv, exit_text(proc.returncode or 0))
