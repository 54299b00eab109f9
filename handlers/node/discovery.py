"""Finding the nodes already running: NATS micro discovery (``$SRV.PING``).

A node that starts asks every megabus service of its prefix for itself, so
it knows the cluster before the first heartbeats arrive.
"""

from __future__ import annotations

import contextlib
import json
import time

import nats.errors

from megabus.bus.connection import Bus
from megabus.bus.messages import Heartbeat

#: Seconds discovery waits for the first service to answer, then for the next.
DISCOVERY_FIRST = 0.5
DISCOVERY_QUIET = 0.05


async def discover(bus: Bus, interval: float) -> list[Heartbeat]:
    """Ask every megabus node of the prefix for itself (``$SRV.PING.<service>``).

    An answer counts as a heartbeat of ``interval`` seconds received now, so a
    node found this way stays live until its own heartbeats take over.
    """
    subject = f"$SRV.PING.{bus.subjects.service_name()}"
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox)
    found: list[Heartbeat] = []
    try:
        await bus.nc.publish(subject, b"", reply=inbox)
        wait = DISCOVERY_FIRST
        while True:
            try:
                msg = await sub.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                break
            if msg.headers and msg.headers.get("Status") == "503":
                break  # nobody else serves the prefix
            wait = DISCOVERY_QUIET
            try:
                info = json.loads(msg.data)
                node = info["metadata"]["node"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(node, str) and node:
                found.append(
                    Heartbeat(
                        node=node,
                        version=str(info.get("version", "")),
                        uptime=0.0,
                        interval=interval,
                        ts=time.time(),
                    )
                )
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return found


__all__ = ["discover"]
