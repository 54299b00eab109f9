"""Lifecycle events for external subscribers: ``mb.v1.event.<namespace>.<kind>``.

Programs follow a cluster by subscribing (``megabus events event`` prints them):
kind ``vm`` for every VM that appears, changes state or is flushed, kind ``cc``
for every agent that connects or goes. The sources call :func:`emit` from
synchronous code (VM state listeners); one task per node publishes, so an event
never blocks a VM's state machine and a slow bus drops nothing but its own
queue's overflow, which is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from megabus.bus.errors import BusError
from megabus.bus.messages import Event

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.model.vm import VM, VMState

logger = logging.getLogger(__name__)

#: Events waiting for the publisher; beyond this the oldest news is dropped.
QUEUE_SIZE = 10000


class EventPublisher:
    """The node's event queue and the task that publishes it."""

    def __init__(self, bus: Bus, node: str) -> None:
        self.bus = bus
        self.node = node
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"events-{self.node}")

    async def stop(self) -> None:
        """Publish what is queued (bounded), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), 5.0)
        task.cancel()
        await asyncio.wait([task])

    def emit(self, namespace: str, kind: str, name: str, detail: dict[str, str]) -> None:
        event = Event(
            node=self.node, namespace=namespace, kind=kind, name=name, detail=detail, ts=time.time()
        )
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("event queue full: %d events dropped", self.dropped)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.bus.publish(self.bus.subjects.event(event.namespace, event.kind), event)
            except BusError as err:
                logger.debug("event not published: %s", err)
            finally:
                self.queue.task_done()

    # -- VMs -------------------------------------------------------------------------

    def vm_added(self, vm: VM) -> None:
        vm.listeners.append(self._vm_state)
        self._vm(vm, "launch", str(vm.state))

    def vm_removed(self, vm: VM) -> None:
        self._vm(vm, "flush", str(vm.state))

    def _vm_state(self, vm: VM, old: VMState) -> None:
        self._vm(vm, "state", str(vm.state), old=str(old))

    def _vm(self, vm: VM, action: str, state: str, **extra: str) -> None:
        detail = {
            "action": action,
            "id": str(vm.id),
            "uuid": vm.uuid,
            "type": str(vm.type),
            "state": state,
            **extra,
        }
        self.emit(vm.namespace, "vm", vm.name, detail)
