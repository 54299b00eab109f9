"""The ``log`` family: level, stderr, file, ring, filter and mesh target of the node's log.

These really change Python logging of the ``megabus`` logger: each
destination is one handler owned by :class:`LogControl`, which lives in
``ctx.state.extra["log"]``. The node should call :func:`setup_logging` at
start so the ``-level``/``-v``/``-logfile`` settings and these commands act on
the same handlers. ``log mesh`` only records the target node for now (2.8's
texts); shipping records over the bus belongs to the log node.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.handlers.registry import CommandError, Result, command
from megabus.handlers.shell import go_errno_text

if TYPE_CHECKING:
    from megabus.cli.language.command import Command
    from megabus.handlers.context import Context
    from megabus.handlers.state import NodeState

logger = logging.getLogger(__name__)

#: The logger every megabus module logs under.
ROOT = "megabus"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: minilog's level names and Python's levels.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def level_name(level: int) -> str:
    """minilog's name of a Python level."""
    for name, value in LEVELS.items():
        if value == level:
            return name
    return logging.getLevelName(level).lower()


class _Drop(logging.Filter):
    """Drops records whose message contains any of the filter strings."""

    def __init__(self, words: list[str]) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(word in message for word in self.words)


class RingHandler(logging.Handler):
    """Keeps the last ``size`` formatted records (2.8's log ring)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@dataclass
class LogControl:
    """The node's log destinations, as ``log`` shows and changes them."""

    #: The level from the node's settings (``clear log level`` goes back to it).
    default_level: int
    level: int
    handlers: dict[str, logging.Handler] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)
    file_path: str = ""
    mesh_node: str = ""

    def __post_init__(self) -> None:
        self._drop = _Drop(self.filters)
        logging.getLogger(ROOT).setLevel(self.level)

    def add(self, name: str, handler: logging.Handler) -> None:
        """Install ``handler`` as destination ``name``, replacing an older one."""
        self.remove(name)
        handler.setLevel(self.level)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(self._drop)
        self.handlers[name] = handler
        logging.getLogger(ROOT).addHandler(handler)

    def remove(self, name: str) -> None:
        """Remove (and close) destination ``name`` if present."""
        handler = self.handlers.pop(name, None)
        if handler is not None:
            logging.getLogger(ROOT).removeHandler(handler)
            handler.close()

    def set_level(self, level: int) -> None:
        """Set the level of the logger and of every destination."""
        self.level = level
        logging.getLogger(ROOT).setLevel(level)
        for handler in self.handlers.values():
            handler.setLevel(level)

    def close(self) -> None:
        """Remove every destination (node shutdown, tests)."""
        for name in list(self.handlers):
            self.remove(name)


def setup_logging(state: NodeState) -> LogControl:
    """Create the node's :class:`LogControl` from its settings (level, verbose, logfile)."""
    existing = state.extra.get("log")
    if isinstance(existing, LogControl):
        return existing
    settings = state.settings
    level = LEVELS.get(settings.level, logging.ERROR)
    control = LogControl(default_level=level, level=level)
    state.extra["log"] = control
    if settings.verbose:
        control.add("stderr", logging.StreamHandler(sys.stderr))
    if settings.logfile:
        _open_file(control, settings.logfile)
    return control


def control_of(ctx: Context) -> LogControl:
    """The node's :class:`LogControl`, set up on first use."""
    return setup_logging(ctx.state)


def _open_file(control: LogControl, path: str) -> None:
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None
    control.add("file", handler)
    control.file_path = path


@command(
    "log level [debug,info,warn,error,fatal]",
    short="set or print the log level",
    long="""Set the log level to one of [debug,info,warn,error,fatal]. Log levels inherit
lower levels, so setting the level to error will also log fatal, and setting
the mode to debug will log everything.""",
)
async def log_level(ctx: Context, cmd: Command) -> Result:
    """Print or set the level."""
    control = control_of(ctx)
    for name, value in LEVELS.items():
        if cmd.flag(name):
            control.set_level(value)
            return None
    return ctx.respond(level_name(control.level))


@command("log stderr [true,false]", short="enable or disable logging to stderr")
async def log_stderr(ctx: Context, cmd: Command) -> Result:
    """Print, enable or disable logging to stderr."""
    control = control_of(ctx)
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
    control = control_of(ctx)
    if "file" not in cmd.string_args:
        return ctx.respond(control.file_path if "file" in control.handlers else "")
    _open_file(control, cmd.arg("file"))
    return None


@command(
    "log mesh [node]",
    short="enable logging to a mesh node",
    long='Log to a mesh node. To disable mesh logging, call "clear log mesh".',
)
async def log_mesh(ctx: Context, cmd: Command) -> Result:
    """Print or set the node that receives this node's log."""
    control = control_of(ctx)
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
    control = control_of(ctx)
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
    control = control_of(ctx)
    if "filter" not in cmd.string_args:
        if not control.filters:
            return ctx.respond("")
        return ctx.respond("[" + " ".join(control.filters) + "]")
    word = cmd.arg("filter")
    if word not in control.filters:
        control.filters.append(word)
    return None


@command(
    "clear log",
    "clear log <file,>",
    "clear log <mesh,>",
    "clear log <level,>",
    "clear log <stderr,>",
    "clear log <filter,>",
    "clear log <ring,>",
    short="reset state for logging",
    long='Resets state for logging. See "help log ..." for more information.',
)
async def clear_log(ctx: Context, cmd: Command) -> Result:
    """Reset one part of the logging (or all of it, stderr included, as 2.8)."""
    control = control_of(ctx)
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
    if everything or cmd.flag("ring"):
        control.remove("ring")
    if everything or cmd.flag("filter"):
        control.filters.clear()
    return None
