"""The ends of a pipe on one node: its readers, its writers, and the pipe's row itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError

logger = logging.getLogger("megabus.pipes")

#: Values waiting for one reader; beyond this the reader is too slow and values are dropped.
MAX_QUEUED = 10000


class Reader:
    """One reader of a pipe: values arrive in order; :meth:`get` gives ``None`` once closed."""

    def __init__(self, pipe: str, rid: int) -> None:
        self.pipe = pipe
        self.id = rid
        self.closed = False
        #: Called once, when the reader closes (the pipe was deleted, or its owner closed it).
        self.on_close: list[Callable[[Reader], None]] = []
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._eof = False
        self._dropped = 0

    def deliver(self, value: str) -> None:
        """Queue ``value``; a reader :data:`MAX_QUEUED` values behind loses it (logged)."""
        if self.closed:
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                logger.error(
                    "pipe %s: a reader is %d values behind; %d dropped so far",
                    self.pipe, MAX_QUEUED, self._dropped,
                )  # fmt: skip
            return
        self._queue.put_nowait(value)

    async def get(self) -> str | None:
        """The next value, or ``None`` once the reader is closed and drained."""
        if self._eof:
            return None
        value = await self._queue.get()
        if value is None:
            self._eof = True
        return value

    def close(self) -> None:
        """Stop reading (idempotent): what is queued is still read, then ``None``."""
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(None)
        for hook in self.on_close:
            hook(self)


class Writer:
    """One writer of a pipe (counted in ``pipe``'s ``writers`` while open)."""

    def __init__(self, pipe: Pipe, write: Callable[[str, str], Awaitable[None]]) -> None:
        self._pipe = pipe
        self._write = write
        self.pipe = pipe.name
        self.closed = False
        pipe.writers += 1

    async def write(self, value: str) -> None:
        """Write ``value`` to the pipe.

        Raises:
            CommandError: the writer is closed, or the value is too large.
        """
        if self.closed:
            raise CommandError(f"pipe {self.pipe}: writer closed")
        await self._write(self.pipe, value)

    def close(self) -> None:
        """Stop writing (idempotent)."""
        if not self.closed:
            self.closed = True
            self._pipe.writers -= 1


@dataclass(eq=False)
class Pipe:
    """This node's view of one pipe (2.8's ``miniplumber.Pipe``)."""

    name: str
    mode: str = "all"
    readers: dict[int, Reader] = field(default_factory=dict)
    writers: int = 0
    #: Round-robin: the reader that got the last value.
    last_recipient: int = 0
    #: The last value this node saw pass (``previous``).
    last: str = ""
    log: bool = False
    #: This node's via program (argv); applies while this node hosts the via.
    via: list[str] = field(default_factory=list)
    #: The node whose via applies ("" or this node: here).
    via_host: str = ""
    #: Values written to the pipe that this node saw (``count``).
    count: int = 0


__all__ = ["MAX_QUEUED", "Pipe", "Reader", "Writer"]
