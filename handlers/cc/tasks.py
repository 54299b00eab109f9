"""A set of tasks with an owner: spawned, logged when they fail, cancelled and awaited at close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class TaskSet:
    """Tasks one object owns."""

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
