"""Opening a connection to the node: TCP, a unix socket, or a serial character device."""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.

from __future__ import annotations

import asyncio
import sys

#: Seconds allowed for one dial (2.8: 5 s per serial dial).
DIAL_TIMEOUT = 5.0
#: Stream buffer limit (frames are read with readexactly, so this only bounds readline).
LIMIT = 2**16


async def dial(
    family: str, parent: str, port: int, serial: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the node: ``serial`` device, unix socket ``parent`` or TCP ``parent:port``.

    Raises:
        OSError, asyncio.TimeoutError: the node cannot be reached.
    """
    if serial:
        if sys.platform.startswith("linux"):
            from megabus.agent.transport_serial import open_serial

            return await asyncio.wait_for(open_serial(serial), DIAL_TIMEOUT)
        raise OSError(f"serial transport not supported on {sys.platform}")
    if family == "unix":
        return await asyncio.wait_for(
            asyncio.open_unix_connection(parent, limit=LIMIT), DIAL_TIMEOUT
        )
    return await asyncio.wait_for(asyncio.open_connection(parent, port, limit=LIMIT), DIAL_TIMEOUT)
