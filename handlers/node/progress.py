"""Progress of long-running commands, published as status updates.

A command wraps its long part::

    async with progress(ctx, "vm launch") as p:
        for i, vm in enumerate(vms, 1):
            ...
            p.update(f"launched {i}/{len(vms)} VMs", i / len(vms))

and ``megabus status`` shows a bar per ``(node, topic)``. Updates go out on
``<prefix>.v1.status.<node>.<topic>`` as :class:`StatusUpdate`, following
``status updates`` (2.8 #1476): the first update goes at once, later ones at
most once per ``ctx.state.status_frequency`` seconds (the newest wins, the
ones between are skipped), and nothing at all when the frequency is 0. When
the block ends, the newest update is sent if it has not been, so a bar ends
where the command did.

:meth:`Progress.update` never awaits and never raises: a command does not
slow down or fail because of its progress report. One task per block sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from megabus.bus.errors import BusError
from megabus.bus.messages import StatusUpdate

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)


class Progress:
    """The latest progress of one command; see :func:`progress`."""

    def __init__(self, bus: Bus | None, node: str, topic: str, frequency: float) -> None:
        self.bus = bus
        self.node = node
        self.topic = topic
        self.frequency = frequency
        #: Updates published (for tests and logs).
        self.sent = 0
        # The update is captured when it is due, not when the sender gets to
        # run: a command that never yields still reports where it was.
        self._latest: StatusUpdate | None = None
        self._queued: StatusUpdate | None = None
        self._last_sent: StatusUpdate | None = None
        self._next_due = -math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.bus is not None and self.frequency > 0

    def update(self, status: str, fraction: float | None = None) -> None:
        """Record the command's progress; ``fraction`` in ``[0, 1]`` when known."""
        if not self.enabled:
            return
        if fraction is not None:
            fraction = min(max(float(fraction), 0.0), 1.0)
        self._latest = StatusUpdate(
            node=self.node, topic=self.topic, status=status, progress=fraction, ts=time.time()
        )
        self._queue_if_due()

    def _queue_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_due and self._latest is not self._last_sent:
            self._queued = self._latest
            self._next_due = now + self.frequency
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            queued, self._queued = self._queued, None
            if queued is not None:
                await self._send(queued)
            # An update made during the period goes when the period ends.
            await asyncio.sleep(max(0.0, self._next_due - time.monotonic()))
            self._queue_if_due()

    async def _send(self, update: StatusUpdate) -> None:
        assert self.bus is not None
        try:
            await self.bus.publish(self.bus.subjects.status(self.node, self.topic), update)
            self.sent += 1
        except asyncio.CancelledError:
            self._queued = self._queued or update  # finish() sends it
            raise
        except BusError as err:
            logger.debug("status update %s not sent: %s", self.topic, err)
        self._last_sent = update

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"progress-{self.topic}")

    async def finish(self) -> None:
        """Stop the sender; send what is queued, then the newest update if it has not gone."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if self._queued is not None:
            await self._send(self._queued)
        if self._latest is not None and self._latest is not self._last_sent:
            await self._send(self._latest)


@contextlib.asynccontextmanager
async def progress(ctx: Context, topic: str) -> AsyncIterator[Progress]:
    """Report the progress of a command's long part under ``topic``."""
    p = Progress(ctx.bus, ctx.host, topic, ctx.state.status_frequency)
    p.start()
    try:
        yield p
    finally:
        await p.finish()


__all__ = ["Progress", "progress"]
