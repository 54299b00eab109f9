"""Mesh logging: a node's log records published on ``<prefix>.v1.log.<node>.<level>``.

minimega 2.8 sends every log line to one mesh node when ``-headnode`` or
``log mesh <node>`` names it, and stops when ``clear log mesh`` is run. Here
the records go to the bus, where ``megabus lognode`` (any number of them)
writes them to disk and ``megabus events``/``megabus status`` tail them.

Design choice: records are published *only while a log node is set*
(``settings.log_node`` at start, ``log mesh <node>`` at run time), as 2.8 only
ships logs while its meshage logger exists. A user who ran ``clear log mesh``
expects nothing to leave the node, and nodes that nobody collects from cost
the bus nothing. The target's name does not appear in the subject: the
records are addressed by their sender, so any collector on the prefix gets
them and a log node can be restarted elsewhere without telling the nodes.

Rules kept from 2.8: records go at the node's current level, but never below
``info`` (2.8 raises ``debug`` to ``info`` because its mesh logs its own sends
at debug: a loop). Here the loop is cut at the root as well: records made by
the publisher task itself (the bus's own logging while sending) are never
queued.

Logging never waits for the bus: :meth:`MeshLogHandler.emit` only appends to
a bounded queue, from any thread; one task publishes. When the queue is full,
or the bus is not connected, records are dropped and counted
(:attr:`MeshLogHandler.dropped`), as 2.8 silently drops what meshage cannot
deliver.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import TYPE_CHECKING

from megabus.bus.errors import BusError
from megabus.bus.messages import LogRecord
from megabus.handlers.node.logs import level_name

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.node.logs import LogControl

logger = logging.getLogger(__name__)

#: Name of the destination in :class:`LogControl`.
NAME = "mesh"
#: Records waiting for the publisher; beyond this they are dropped.
QUEUE_SIZE = 10_000

# Set inside the publisher task: what it logs (or what the bus logs for it)
# must not be queued again, or a failing send would feed itself.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("meshlog", default=False)


class MeshLogHandler(logging.Handler):
    """Queues records for the bus while the node has a log node set.

    Args:
        control: the node's log destinations; its ``mesh_node`` switches
            publishing on and off, and it sets this handler's level.
        bus: the node's connection.
        node: the node name the records carry (the sender).
    """

    def __init__(self, control: LogControl, bus: Bus, node: str) -> None:
        super().__init__()
        self.control = control
        self.bus = bus
        self.node = node
        #: Records that could not be published (queue full, bus down, send error).
        self.dropped = 0
        #: Records published.
        self.sent = 0
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[LogRecord] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._publish(), name=f"meshlog-{node}"
        )

    @property
    def active(self) -> bool:
        """Whether records leave the node now (a log node is set)."""
        return bool(self.control.mesh_node)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.active or _publishing.get() or record.levelno < logging.INFO:
            return
        if record.name == __name__:
            return  # our own notes about sending would go round
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            out = LogRecord(
                node=self.node,
                level=level_name(record.levelno),
                message=message,
                logger=record.name,
                ts=record.created,
            )
        except Exception:
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._enqueue(out)
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, out)
        except RuntimeError:  # the loop is closed: the node is gone
            self.dropped += 1

    def _enqueue(self, out: LogRecord) -> None:
        try:
            self._queue.put_nowait(out)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _publish(self) -> None:
        _publishing.set(True)  # this task's context only
        subjects = self.bus.subjects
        while True:
            out = await self._queue.get()
            if not self.bus.nc.is_connected:
                # Reconnecting or closed: nats-py would buffer, then replay a
                # backlog of stale lines; 2.8 drops what it cannot send.
                self.dropped += 1
                continue
            try:
                await self.bus.publish(subjects.log(self.node, out.level), out)
                self.sent += 1
            except BusError as err:
                self.dropped += 1
                logger.debug("log record not sent: %s", err)

    async def drain(self, within: float = 2.0) -> None:
        """Wait (bounded) until the queued records are handed to the bus."""
        try:
            async with asyncio.timeout(within):
                while not self._queue.empty():  # noqa: ASYNC110 - no event for "empty"
                    await asyncio.sleep(0.01)
        except TimeoutError:
            logger.debug("mesh log: %d records left unsent", self._queue.qsize())

    async def stop(self) -> None:
        """Stop the publisher; records still queued are dropped and counted."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self.dropped += self._queue.qsize()

    def close(self) -> None:
        # LogControl closes destinations synchronously; the task is stopped
        # by the node stop hook (it needs the loop).
        if self._task is not None:
            self._task.cancel()
        super().close()


async def start_mesh_logging(
    control: LogControl, bus: Bus, node: str, target: str
) -> MeshLogHandler:
    """Install the bus destination; a ``target`` (``-log-node``) that is this node is ignored."""
    if target and target != node and not control.mesh_node:
        control.mesh_node = target
    handler = MeshLogHandler(control, bus, node)
    control.add(NAME, handler)
    return handler


async def stop_mesh_logging(control: LogControl, handler: MeshLogHandler) -> None:
    """Send what is queued (briefly), then stop the publisher."""
    await handler.drain()
    control.remove(NAME)
    await handler.stop()
    if handler.dropped:
        logger.info("mesh log: %d records dropped", handler.dropped)


__all__ = ["MeshLogHandler", "start_mesh_logging", "stop_mesh_logging"]
