"""The VNC TCP shim: a TCP port per KVM guest, proxied to QEMU's VNC socket.

2.8 (reference 3.4 step 6) listens on a random port (``vnc_port``), copies
bytes both ways between each client and ``<inst>/vnc``, and hands what the
client sends to the namespace's kb recorder. The server's bytes go through
untouched; the client's are copied first and parsed on the side
(:class:`~megabus.handlers.vnc.rfb.ClientStream`), so a parse failure never
breaks a viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from megabus.bus.tasks import TaskSet
from megabus.handlers.vnc.rfb import ClientStream, Event

logger = logging.getLogger(__name__)

#: Bytes per read; large reads keep framebuffer traffic cheap.
CHUNK = 256 * 1024

#: Called with each key or pointer event a client sends.
OnEvent = Callable[[Event], None]


class VncShim:
    """One guest's TCP port.

    Args:
        socket_path: QEMU's VNC unix socket.
        on_event: gets the key and pointer events clients send.
        name: for logs and task names.
        bind: the address to listen on (2.8 listens on every interface; one
            IPv4 socket, since a port 0 per address family gives two ports).
    """

    def __init__(
        self, socket_path: str, on_event: OnEvent, name: str, bind: str = "0.0.0.0"
    ) -> None:
        self.socket_path = socket_path
        self.on_event = on_event
        self.name = name
        self.bind = bind
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks = TaskSet(f"vnc-shim:{name}")
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen on a free port and return it."""
        self._server = await asyncio.start_server(self._client, self.bind, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                up_r, up_w = await asyncio.open_unix_connection(self.socket_path, limit=CHUNK)
            except OSError as err:
                logger.info("vnc shim %s: %s: %s", self.name, self.socket_path, err)
                return
            self._writers.add(up_w)
            stream = ClientStream()
            down = self._tasks.spawn(self._copy(up_r, writer, None), "down")
            try:
                await self._copy(reader, up_w, stream)
            finally:
                down.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await down
                self._writers.discard(up_w)
                up_w.close()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _copy(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, stream: ClientStream | None
    ) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                if stream is not None:
                    for event in stream.feed(data):
                        self.on_event(event)
                    if stream.broken:
                        logger.info("vnc shim %s: %s; no more events", self.name, stream.broken)
                        stream = None
                await dst.drain()
        except (ConnectionError, OSError):
            return
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()

    async def close(self) -> None:
        """Stop listening and drop every client."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.close()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        await self._tasks.aclose()
