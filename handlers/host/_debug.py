"""``debug``: Python's answers to 2.8's Go runtime figures and pprof files.

* ``debug``: the Python version, the event loop's tasks (megabus's
  goroutines) and the threads;
* ``debug memory <file>``: a :mod:`tracemalloc` snapshot
  (``tracemalloc.Snapshot.load(file).statistics("lineno")`` reads it).
  Tracing costs memory and time, so it starts with the first ``debug
  memory``: that file holds little, the next ones everything allocated since;
* ``debug cpu start <file>`` / ``debug cpu stop``: :mod:`cProfile` of the
  event loop's thread, where every command and engine runs; the file is
  ``pstats`` data (``python -m pstats <file>``);
* ``debug goroutine <file>``: the stack of every task and every thread.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import logging
import platform
import sys
import threading
import traceback
import tracemalloc
from dataclasses import dataclass

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text

logger = logging.getLogger(__name__)

HEADER = ["pyversion", "tasks", "threads"]


def _create(path: str) -> None:
    """Go's ``os.Create``: the file exists and is empty, or the error says why."""
    try:
        with open(path, "wb"):
            pass
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None


def info() -> list[str]:
    """``debug``'s row (run in the event loop's thread)."""
    return [platform.python_version(), str(len(asyncio.all_tasks())), str(threading.active_count())]


def write_memory(path: str) -> None:
    """A tracemalloc snapshot into ``path`` (blocking)."""
    _create(path)
    if not tracemalloc.is_tracing():
        logger.info("starting memory tracing (the next debug memory sees the allocations)")
        tracemalloc.start(25)
    tracemalloc.take_snapshot().dump(path)


def stacks() -> str:
    """Every task's and every thread's stack (run in the event loop's thread)."""
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.write(f"task {task.get_name()}:\n")
        task.print_stack(file=out)
        out.write("\n")
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"thread {names.get(ident, ident)}:\n")
        out.write("".join(traceback.format_stack(frame)))
        out.write("\n")
    return out.getvalue()


def write_text(path: str, text: str) -> None:
    _create(path)
    with open(path, "w") as fh:
        fh.write(text)


@dataclass
class Profiler:
    """The node's one CPU profile (2.8 allowed one at a time too)."""

    profile: cProfile.Profile | None = None
    path: str = ""

    def check_idle(self) -> None:
        if self.profile is not None:
            raise CommandError("CPU profile still running")

    def start(self, path: str) -> None:
        """Profile the calling thread (the event loop's) from now on (``path`` exists)."""
        self.check_idle()
        logger.info("writing cpu profile to %s", path)
        profile = cProfile.Profile()
        profile.enable()
        self.profile, self.path = profile, path

    def stop(self) -> tuple[cProfile.Profile, str]:
        """Stop profiling; the caller writes the profile (:func:`write_profile`)."""
        if self.profile is None:
            raise CommandError("CPU profile not running")
        profile, path = self.profile, self.path
        profile.disable()
        self.profile, self.path = None, ""
        return profile, path


def write_profile(profile: cProfile.Profile, path: str) -> None:
    """The profile as pstats data (blocking)."""
    try:
        profile.dump_stats(path)
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None
