"""Who is alive: the latest heartbeat of every node.

Every node publishes a :class:`Heartbeat` on ``<prefix>.v1.hb.<node>`` each
interval. :class:`Membership` listens to all of them; a node is live while its
last heartbeat is younger than three of *its own* intervals, so nodes with
different intervals mix. Ages are measured with this process's monotonic clock
at receipt, never with the sender's ``ts``, so clock skew between hosts cannot
make a node look dead or immortal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusDecodeError
from megabus.bus.messages import Heartbeat

logger = logging.getLogger(__name__)

#: A node is gone after this many of its heartbeat intervals without one.
MISSED_BEATS = 3
#: Seconds to wait for the server to confirm the subscription.
FLUSH_TIMEOUT = 5


@dataclass(frozen=True)
class Seen:
    """A node's last heartbeat and when it arrived (monotonic seconds)."""

    heartbeat: Heartbeat
    at: float


class Membership:
    """Tracks the nodes of one prefix from their heartbeats.

    Args:
        bus: the connection to listen on; its ``node`` always counts as live.
        clock: monotonic time source (a seam for tests).
    """

    def __init__(self, bus: Bus, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self._clock = clock
        self._seen: dict[str, Seen] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe to every heartbeat of the prefix."""
        if self._sub is None:
            self._sub = await self.bus.nc.subscribe(
                self.bus.subjects.heartbeats(), cb=self._on_heartbeat
            )
            # The round trip makes the server hold the subscription on return.
            await self.bus.nc.flush(timeout=FLUSH_TIMEOUT)

    async def stop(self) -> None:
        """Stop listening; what was seen stays readable. Idempotent."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("heartbeat unsubscribe failed: %s", err)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            hb = decode(msg.data, Heartbeat)
        except BusDecodeError as err:
            logger.debug("ignoring bad heartbeat on %s: %s", msg.subject, err)
            return
        self.observe(hb)

    def observe(self, hb: Heartbeat) -> None:
        """Record ``hb`` as received now (also used for this node's own beats).

        A node's last beat (``leaving``) removes it: it is gone, not late.
        """
        if hb.leaving:
            self._seen.pop(hb.node, None)
            return
        self._seen[hb.node] = Seen(hb, self._clock())

    def is_live(self, node: str) -> bool:
        """Whether ``node`` is this node or beat within ``MISSED_BEATS`` of its intervals."""
        if node == self.bus.node:
            return True
        seen = self._seen.get(node)
        if seen is None:
            return False
        return self._clock() - seen.at <= MISSED_BEATS * max(seen.heartbeat.interval, 0.0)

    def live(self) -> list[str]:
        """Names of the live nodes, sorted, always including this one."""
        return sorted({self.bus.node, *(n for n in self._seen if self.is_live(n))})

    def heartbeats(self) -> dict[str, Seen]:
        """The last heartbeat of every node ever heard, live or not."""
        return dict(self._seen)

    async def __aenter__(self) -> Membership:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = ["MISSED_BEATS", "Membership", "Seen"]
