"""Which VMs run on which host, from the cluster's VM events: what a host that left took with it.

Every node publishes its VMs' lifecycle (``mb.v1.event.<namespace>.vm``:
launch, state changes, flush); :class:`Whereabouts` follows them for the
whole cluster, so when a host stops answering, a fan-out names the VMs it
ran in the namespace as lost (:func:`lost_note`) instead of leaving the
user to guess. It holds names only, one entry per live VM of the cluster.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import nats.errors

from megabus.bus.codec import decode
from megabus.bus.errors import BusDecodeError
from megabus.bus.messages import Event

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from megabus.bus.connection import Bus

logger = logging.getLogger(__name__)


class Whereabouts:
    """host -> namespace -> names of the VMs it runs (as its events last said)."""

    def __init__(self) -> None:
        self.vms: dict[str, dict[str, set[str]]] = {}
        self._sub: Subscription | None = None

    async def start(self, bus: Bus) -> None:
        self._sub = await bus.nc.subscribe(bus.subjects.events(), cb=self._on_event)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("event unsubscribe failed: %s", err)

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = decode(msg.data, Event)
        except BusDecodeError as err:
            logger.debug("ignoring bad event on %s: %s", msg.subject, err)
            return
        self.observe(event)

    def observe(self, event: Event) -> None:
        if event.kind != "vm" or not event.name:
            return
        names = self.vms.setdefault(event.node, {}).setdefault(event.namespace, set())
        if event.detail.get("action") == "flush":
            names.discard(event.name)
        else:
            names.add(event.name)

    def on(self, host: str, namespace: str) -> list[str]:
        """The VMs ``host`` ran in ``namespace``, sorted."""
        return sorted(self.vms.get(host, {}).get(namespace, set()))


def lost_note(where: Whereabouts | None, host: str, namespace: str) -> str:
    """``; its VMs are lost: a, b`` for a host that does not answer (``""`` when none)."""
    names = where.on(host, namespace) if where is not None else []
    return f"; its VMs are lost: {', '.join(names)}" if names else ""
