"""The ``log`` family: level, stderr, file, ring, filter, syslog and mesh target of the node's log.

These really change Python logging of the ``megabus`` logger through the
node's :class:`~megabus.handlers.node.logs.LogControl` (``ctx.state.logs``),
which the node sets up at start from ``-level``/``-v``/``-logfile``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.node.logs import LEVELS, RingHandler, level_name, open_file, open_syslog
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"[+-]?[0-9]+")


@command(
    "log level [debug,info,warn,error,fatal]",
    short="set or print the log level",
    long="""Set the log level to one of [debug,info,warn,error,fatal]. Log levels inherit
lower levels, so setting the level to error will also log fatal, and setting
the mode to debug will log everything.""",
)
async def log_level(ctx: Context, cmd: Command) -> Result:
    """Print or set the level."""
    control = ctx.state.log_control()
    for name, value in LEVELS.items():
        if cmd.flag(name):
            control.set_level(value)
            return None
    return ctx.respond(level_name(control.level))


@command("log stderr [true,false]", short="enable or disable logging to stderr")
async def log_stderr(ctx: Context, cmd: Command) -> Result:
    """Print, enable or disable logging to stderr."""
    control = ctx.state.log_control()
    if cmd.flag("false"):
        control.remove("stderr")
    elif cmd.flag("true"):
        if "stderr" not in control.handlers:
            control.add("stderr", logging.StreamHandler(sys.stderr))
    else:
        return ctx.respond("true" if "stderr" in control.handlers else "false")
    return None


@command(
    "log file [file]",
    short="enable logging to a file",
    long='Log to a file. To disable file logging, call "clear log file".',
)
async def log_file(ctx: Context, cmd: Command) -> Result:
    """Print the log file, or log to a (new) file."""
    control = ctx.state.log_control()
    if "file" not in cmd.string_args:
        return ctx.respond(control.file_path if "file" in control.handlers else "")
    open_file(control, cmd.arg("file"))
    return None


@command(
    "log mesh [node]",
    short="enable logging to a mesh node",
    long='Log to a mesh node. To disable mesh logging, call "clear log mesh".',
)
async def log_mesh(ctx: Context, cmd: Command) -> Result:
    """Print or set the node that receives this node's log."""
    control = ctx.state.log_control()
    if "node" not in cmd.string_args:
        if not control.mesh_node:
            return ctx.respond("mesh logging disabled")
        return ctx.respond(f"sending all logs to node {control.mesh_node}")
    node = cmd.arg("node")
    if not node:
        raise CommandError(f"node {node} not in mesh")
    control.mesh_node = node
    return None


@command(
    "log ring [size]",
    short="enable, disable, or dump log ring",
    long="""The log ring contains recent log messages, if it is enabled. By default
the ring is not enabled. When enabling it, the user can specify a size. The
larger the size, the more memory the logs will consume. The log ring can be
cleared by re-enabling it with the same (or different) size.

To disable the log ring, call "clear log ring".""",
)
async def log_ring(ctx: Context, cmd: Command) -> Result:
    """Dump the ring, or (re)start it with a size."""
    control = ctx.state.log_control()
    text = cmd.arg("size")
    if not text:
        ring = control.handlers.get("ring")
        if not isinstance(ring, RingHandler):
            raise CommandError("cannot dump log ring, not enabled")
        return ctx.respond("".join(ring.lines))
    size = int(text) if _INTEGER.fullmatch(text) else None
    if size is None:
        raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    if size <= 0:
        raise CommandError(f"invalid ring size: {size}")
    if "ring" in control.handlers:
        logger.info("re-enabling log ring")
    control.add("ring", RingHandler(size))
    return None


@command(
    "log filter [filter]",
    short="filter logging messages",
    long="""Control what data gets logged based on matching text. For example, to filter
out all logging messages containing the word "foo":

\tlog filter foo""",
)
async def log_filter(ctx: Context, cmd: Command) -> Result:
    """Print the filters, or drop messages containing a text from now on."""
    control = ctx.state.log_control()
    if "filter" not in cmd.string_args:
        if not control.filters:
            return ctx.respond("")
        return ctx.respond("[" + " ".join(control.filters) + "]")
    word = cmd.arg("filter")
    if word not in control.filters:
        control.filters.append(word)
    return None


@command(
    "log syslog remote <tcp,udp> <address>",
    "log syslog <local,>",
    short="log to syslog",
    long="""Log to a syslog daemon on the provided network and address. For example, to log
over UDP to a syslog server foo on port 514:

\tlog syslog remote udp foo:514

"log syslog local" logs to this host's syslog socket (/dev/log). To stop, call
"clear log syslog".""",
)
async def log_syslog(ctx: Context, cmd: Command) -> Result:
    """Send the node's log to syslog, local or remote (replacing an earlier one)."""
    control = ctx.state.log_control()
    if cmd.flag("local"):
        network, address = "local", ""
    else:
        network, address = ("tcp" if cmd.flag("tcp") else "udp"), cmd.arg("address")
    await asyncio.to_thread(open_syslog, control, network, address)
    return None


@command(
    "clear log",
    "clear log <file,>",
    "clear log <mesh,>",
    "clear log <level,>",
    "clear log <stderr,>",
    "clear log <filter,>",
    "clear log <syslog,>",
    "clear log <ring,>",
    short="reset state for logging",
    long='Resets state for logging. See "help log ..." for more information.',
)
async def clear_log(ctx: Context, cmd: Command) -> Result:
    """Reset one part of the logging (or all of it, stderr included, as 2.8)."""
    control = ctx.state.log_control()
    everything = not cmd.bool_args
    if everything or cmd.flag("file"):
        control.remove("file")
        control.file_path = ""
    if everything or cmd.flag("mesh"):
        control.mesh_node = ""
    if everything or cmd.flag("level"):
        control.set_level(control.default_level)
    if everything or cmd.flag("stderr"):
        control.remove("stderr")
    if everything or cmd.flag("syslog"):
        control.remove("syslog")
    if everything or cmd.flag("ring"):
        control.remove("ring")
    if everything or cmd.flag("filter"):
        control.filters.clear()
    return None
