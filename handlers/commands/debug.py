"""``debug``: the node's runtime figures and profile files (2.8's Go ``pprof``, in Python).

``debug`` answers ``pyversion | tasks | threads`` (2.8: ``goversion |
goroutines | cgocalls``); ``debug memory``, ``debug cpu start|stop`` and
``debug goroutine`` write :mod:`tracemalloc`, :mod:`cProfile` and
task-stack files (see :mod:`megabus.handlers.host` for their formats). A
relative file name is under the files directory (``-filepath``), as in 2.8.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from megabus.handlers import host
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)


def _path(ctx: Context, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(ctx.state.settings.files_dir, name)


@command(
    "debug",
    "debug <memory,> <file>",
    "debug <cpu,> <start,> <file>",
    "debug <cpu,> <stop,>",
    "debug <goroutine,> <file>",
    short="display internal debug information",
    long="""debug can help find and resolve issues with megabus. Without arguments, debug
prints the Python version, the number of asyncio tasks (megabus's goroutines)
and the number of threads.

With arguments, debug writes files:

- memory: a tracemalloc snapshot (tracing starts with the first one; read it
  with tracemalloc.Snapshot.load(file).statistics("lineno"))
- cpu: starts cProfile on the event loop (must be stopped before read; read it
  with python -m pstats file)
- goroutine: the stack of every task and thread""",
)
async def debug(ctx: Context, cmd: Command) -> Result:
    profiler = ctx.state.profiler
    if cmd.flag("memory"):
        path = _path(ctx, cmd.arg("file"))
        logger.info("writing memory profile to %s", path)
        await asyncio.to_thread(host.write_memory, path)
    elif cmd.flag("goroutine"):
        path = _path(ctx, cmd.arg("file"))
        logger.info("writing task stacks to %s", path)
        await asyncio.to_thread(host.write_text, path, host.stacks())
    elif cmd.flag("start"):
        path = _path(ctx, cmd.arg("file"))
        profiler.check_idle()
        await asyncio.to_thread(host.write_text, path, "")
        # in this thread: cProfile follows the thread that enables it, the event loop's
        profiler.start(path)
    elif cmd.flag("stop"):
        profile, path = profiler.stop()
        await asyncio.to_thread(host.write_profile, profile, path)
    else:
        return ctx.table(list(host.DEBUG_HEADER), [host.debug_info()])
    return None
