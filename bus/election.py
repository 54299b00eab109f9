"""Writes to a replicated JetStream stream that wait out its leader's election.

When the server that leads a stream (the VLAN bucket, a namespace's cc
commands) dies, the survivors elect a new leader within a few seconds; until
then a write gets "no responders". No leader took the message, so sending it
again cannot store it twice. A timeout is different (the write may have been
stored) and is never retried here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.js.errors

logger = logging.getLogger(__name__)

#: Seconds a write waits for a stream to get a leader again (NATS elects
#: within a few seconds; placing a new stream's replicas with one of three
#: servers down took up to 8 s on our machines).
ELECTION = 15.0
#: Seconds between tries.
PAUSE = 0.25

T = TypeVar("T")


async def through_election(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``await call()``, sent again while the stream has no leader, up to :data:`ELECTION`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ELECTION
    while True:
        try:
            return await call()
        except nats.js.errors.NoStreamResponseError:
            if loop.time() >= deadline:
                raise
            logger.info("%s: the stream has no leader yet; sending again", what)
            await asyncio.sleep(PAUSE)
