"""``cc tunnel`` and ``cc rtunnel`` on the node side: TCP streams carried in Tunnel frames.

Forward: the node listens on ``src``; each connection opens a stream the
agent completes by dialing ``host:dst`` in the guest. Reverse: the agent
listens on ``src`` in the guest; each connection opens a stream the node
completes by dialing ``host:dst``. Node streams have even IDs, agent streams
odd ones, so the two sides never pick the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from megabus.bus import cc_messages as wire
from megabus.bus.tasks import TaskSet

if TYPE_CHECKING:
    from megabus.handlers.cc._client import ClientConn

logger = logging.getLogger(__name__)

#: Bytes read from a TCP side per Tunnel frame.
READ_SIZE = 64 * 1024
DIAL_TIMEOUT = 10.0


class TunnelMux:
    """The tunnels of one cc server."""

    def __init__(self, namespace: str) -> None:
        self._next = 0
        #: Data for streams whose dial has not finished (the agent sends as soon
        #: as it has sent "open"), by (client, stream).
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._listeners: list[asyncio.Server] = []
        self.tasks = TaskSet(f"tunnels:{namespace}")

    async def forward(self, conn: ClientConn, src: int, host: str, dst: int) -> None:
        """Listen on ``src``; every connection goes to ``host:dst`` as the guest sees it."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._next += 2
            stream = self._next
            conn.streams[stream] = writer
            try:
                await conn.send(wire.Tunnel(stream=stream, op="open", host=host, port=dst))
            except (OSError, TimeoutError, RuntimeError):
                conn.streams.pop(stream, None)
                writer.close()
                return
            await self._pump(conn, stream, reader)

        self._listeners.append(await asyncio.start_server(accept, None, src))

    async def _pump(self, conn: ClientConn, stream: int, reader: asyncio.StreamReader) -> None:
        """TCP -> frames until the TCP side ends; then close the stream."""
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                await conn.send(wire.Tunnel(stream=stream, op="data", data=data))
        except (OSError, TimeoutError, RuntimeError) as err:
            logger.debug("tunnel %d: %s", stream, err)
        finally:
            writer = conn.streams.pop(stream, None)
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                    await conn.send(wire.Tunnel(stream=stream, op="close"))

    async def on_frame(self, conn: ClientConn, frame: wire.Tunnel) -> None:
        """A Tunnel frame from the agent."""
        key = (conn.uuid, frame.stream)
        if frame.op == "open":
            self._pending[key] = []
            self.tasks.spawn(self._dial(conn, frame), f"dial:{frame.stream}")
        elif frame.op == "data":
            pending = self._pending.get(key)
            if pending is not None:
                pending.append(frame.data)
                return
            writer = conn.streams.get(frame.stream)
            if writer is not None:
                writer.write(frame.data)
                await asyncio.wait_for(writer.drain(), DIAL_TIMEOUT)
        elif frame.op == "close":
            self._pending.pop(key, None)
            writer = conn.streams.pop(frame.stream, None)
            if writer is not None:
                writer.close()

    async def _dial(self, conn: ClientConn, frame: wire.Tunnel) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(frame.host, frame.port), DIAL_TIMEOUT
            )
        except (OSError, TimeoutError) as err:
            self._pending.pop((conn.uuid, frame.stream), None)
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                await conn.send(wire.Tunnel(stream=frame.stream, op="close", error=str(err)))
            return
        for chunk in self._pending.pop((conn.uuid, frame.stream), []):
            writer.write(chunk)
        conn.streams[frame.stream] = writer
        await self._pump(conn, frame.stream, reader)

    async def drop_client(self, conn: ClientConn) -> None:
        """Close every stream of a connection that went away."""
        for writer in conn.streams.values():
            writer.close()
        conn.streams.clear()

    async def close(self) -> None:
        for server in self._listeners:
            server.close()
        self._listeners.clear()
        await self.tasks.aclose()
