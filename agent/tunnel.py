"""``cc tunnel``/``cc rtunnel`` on the agent side: TCP streams carried in Tunnel frames.

The node opens even-numbered streams (forward tunnels: the agent dials in the
guest); the agent opens odd-numbered ones (reverse tunnels: it listens in the
guest and the node dials).
"""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.
# ruff: noqa: UP041

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
DIAL_TIMEOUT = 10.0

Send = Callable[[wire.Frame], Awaitable[None]]


class Tunnels:
    """Every tunnel stream of the agent."""

    def __init__(self) -> None:
        self._streams: dict[int, asyncio.StreamWriter] = {}
        #: Data that arrived for a stream whose dial has not finished yet: the
        #: other side starts sending as soon as it has sent "open".
        self._pending: dict[int, list[bytes]] = {}
        self._closed_early: set[int] = set()
        self._next = 1
        self._listeners: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.send: Send = _nowhere

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_frame(self, frame: wire.Tunnel) -> None:
        if frame.op == "open":
            self._pending[frame.stream] = []
            self._spawn(self._dial(frame))
        elif frame.op == "data":
            pending = self._pending.get(frame.stream)
            if pending is not None:
                pending.append(frame.data)
                return
            writer = self._streams.get(frame.stream)
            if writer is not None:
                writer.write(frame.data)
                await writer.drain()
        elif frame.op == "close":
            if self._pending.pop(frame.stream, None) is not None:
                self._closed_early.add(frame.stream)
            writer = self._streams.pop(frame.stream, None)
            if writer is not None:
                writer.close()

    async def _dial(self, frame: wire.Tunnel) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(frame.host, frame.port), DIAL_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as err:
            self._pending.pop(frame.stream, None)
            self._closed_early.discard(frame.stream)
            await self._send_quietly(wire.Tunnel(stream=frame.stream, op="close", error=str(err)))
            return
        for chunk in self._pending.pop(frame.stream, []):
            writer.write(chunk)
        if frame.stream in self._closed_early:
            # the other side sent its data and hung up before the dial finished
            self._closed_early.discard(frame.stream)
            await writer.drain()
            writer.write_eof()
        self._streams[frame.stream] = writer
        await self._pump(frame.stream, reader)

    async def listen(self, frame: wire.ListenTunnel) -> None:
        """Reverse tunnel: listen on ``frame.port``; connections reach ``host:dst`` via the node."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = self._next
            self._next += 2
            self._streams[stream] = writer
            await self._send_quietly(
                wire.Tunnel(stream=stream, op="open", host=frame.host, port=frame.dst)
            )
            await self._pump(stream, reader)

        try:
            self._listeners.append(await asyncio.start_server(accept, None, frame.port))
        except OSError as err:
            await self._send_quietly(wire.Error(error=f"rtunnel: listen on {frame.port}: {err}"))

    async def _pump(self, stream: int, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                await self.send(wire.Tunnel(stream=stream, op="data", data=data))
        except (OSError, asyncio.TimeoutError) as err:
            logger.debug("tunnel %d: %s", stream, err)
        finally:
            writer = self._streams.pop(stream, None)
            if writer is not None:
                writer.close()
                await self._send_quietly(wire.Tunnel(stream=stream, op="close"))

    async def _send_quietly(self, frame: wire.Frame) -> None:
        try:
            await self.send(frame)
        except (OSError, asyncio.TimeoutError, RuntimeError) as err:
            logger.debug("tunnel: %s", err)

    def drop_streams(self) -> None:
        """The connection went away: every stream ends (listeners stay for the next one)."""
        for writer in self._streams.values():
            writer.close()
        self._streams.clear()

    async def close(self) -> None:
        self.drop_streams()
        for server in self._listeners:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)


async def _nowhere(frame: wire.Frame) -> None:
    raise OSError("not connected")
