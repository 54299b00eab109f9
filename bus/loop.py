"""Run a front end's or a node's main coroutine on the fastest event loop here.

uvloop (libuv under asyncio's API) halves the event loop's share of a request
(its poll, call_soon and socket paths are C): on the command path that is
most of the node's CPU once dispatch is cached. It is a dependency, but a
Python or platform without its wheel still runs on the stdlib loop, so it is
looked up when a loop is made rather than imported at the top.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when it is installed, else ``None`` (the stdlib loop)."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop when it is installed."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


__all__ = ["loop_factory", "run"]
