"""Tasks with an owner: the one way megabus runs background work.

Every long-lived or fire-and-forget task belongs to a :class:`TaskSet`: the
set keeps a reference (so the loop never drops it), logs a task's failure the
moment it ends (an exception nobody reads is a bug nobody sees), and at close
cancels what is left and waits for it, bounded. Objects that spawn work
(a node's requests, a cc server, the scheduler's launcher, IP learning) own
one set each and close it when they stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class TaskSet:
    """Tasks one object owns.

    Args:
        name: prefix of the tasks' names (for logs and debuggers).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run ``coro``; a failure is logged, never lost."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}" if name else self.name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def join(self) -> None:
        """Wait for the running tasks to end by themselves (callers bound it with a timeout)."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks)

    async def aclose(self, grace: float = 5.0) -> None:
        """Cancel every task and wait for them (bounded)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                logger.warning("task %s did not stop in %ss", task.get_name(), grace)

    def __len__(self) -> int:
        return len(self._tasks)


__all__ = ["TaskSet"]
