"""JetStream calls that wait out an election after a NATS server died.

When the server that leads a stream (the VLAN bucket, a namespace's cc
commands) dies, the survivors elect a new leader within a few seconds; until
then a write gets "no responders". No leader took the message, so sending it
again cannot store it twice. A timeout is different (the write may have been
stored) and is never retried by :func:`through_election`.

When the server that led the cluster's metadata dies, every API call that
creates or looks up a stream or consumer goes unanswered until a new meta
leader is elected (7 s in a CI run of the lab; a node started meanwhile
exited). Those calls are idempotent, so :func:`until_answered` asks again
after a timeout too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors

logger = logging.getLogger(__name__)

#: Seconds a write waits for a stream to get a leader again (NATS elects
#: within a few seconds; placing a new stream's replicas with one of three
#: servers down took up to 8 s on our machines).
ELECTION = 15.0
#: Seconds an idempotent API call keeps asking: a meta leader's election
#: took 7 s in the lab, and more than 30 s once on a loaded machine.
META_ELECTION = 45.0
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


#: What an unanswered JetStream API call raises (asyncio's, nats-py's own, no
#: responders, and JetStream's 503).
UNANSWERED = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
)


async def until_answered(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``await call()`` (an idempotent API call), asked again while unanswered.

    Up to :data:`META_ELECTION` seconds; each ``call`` brings its own timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + META_ELECTION
    while True:
        try:
            return await call()
        except UNANSWERED:
            if loop.time() >= deadline:
                raise
            logger.info("%s: JetStream did not answer (an election?); asking again", what)
            await asyncio.sleep(PAUSE)
