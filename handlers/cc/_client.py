"""One connected agent on the node side: framing, handshake, heartbeats, its reader loop.

The :class:`~megabus.handlers.cc.server.CcServer` owns every connection and
decides what the frames mean; this module only speaks the wire. Frames are
written under a lock, so a file chunk never interleaves with a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from megabus.bus import cc_messages as wire

if TYPE_CHECKING:
    from megabus.handlers.model.vm import VM

logger = logging.getLogger(__name__)

#: Seconds an agent has to send its hello once the magic bytes are in.
HELLO_TIMEOUT = 10.0
#: Seconds of silence after which the node drops an agent (2.8's CLIENT_EXPIRED).
CLIENT_EXPIRED = 30.0
#: Seconds a frame write may take before the connection counts as dead.
WRITE_TIMEOUT = 30.0


class HandshakeError(Exception):
    """The agent could not be accepted; ``too_old`` says it must not be redialled."""

    def __init__(self, text: str, *, too_old: bool = False) -> None:
        super().__init__(text)
        self.too_old = too_old


@dataclass(eq=False)
class ClientConn:
    """A connected agent."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    info: wire.ClientInfo
    #: Where it came in (``unix:/path``, ``tcp:1.2.3.4:5``, ``serial:/path``).
    via: str
    vm: VM | None = None
    #: Highest command ID considered for this connection.
    max_sent: int = 0
    checkin: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Open ``cc tunnel`` streams of this connection (stream id -> writer).
    streams: dict[int, Any] = field(default_factory=dict)
    closed: bool = False
    #: Closing ends the session only; the stream belongs to someone else (a serial dialer).
    keep_stream: bool = False
    #: What the agent said it can do in its hello (``pipes``).
    features: list[str] = field(default_factory=list)
    #: ``cc recv`` files the node could not write, by command ID, for the response's stderr.
    recv_failed: dict[int, list[str]] = field(default_factory=dict)

    @property
    def uuid(self) -> str:
        return self.info.uuid

    async def send(self, frame: wire.Frame) -> None:
        """Write one frame (raises ``OSError``/``TimeoutError`` when the agent is gone)."""
        data = wire.encode(frame)
        async with self.lock:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)

    async def close(self) -> None:
        """Hang up (idempotent); with ``keep_stream``, only end the session."""
        if self.closed:
            return
        self.closed = True
        if self.keep_stream:
            return
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (OSError, TimeoutError):
            pass


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    magic_timeout: float | None,
) -> wire.Hello:
    """Magic both ways, then the agent's :class:`Hello`; an agent too old is told so once.

    Raises:
        HandshakeError: the agent is not acceptable.
        asyncio.IncompleteReadError, OSError, TimeoutError: the connection failed.
    """
    if magic_timeout is None:
        await wire.expect_magic(reader)
    else:
        await asyncio.wait_for(wire.expect_magic(reader), magic_timeout)
    writer.write(wire.MAGIC)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    try:
        frame = await asyncio.wait_for(wire.read_frame(reader), HELLO_TIMEOUT)
    except wire.FrameError as err:
        raise HandshakeError(f"bad hello: {err}") from err
    if not isinstance(frame, wire.Hello):
        raise HandshakeError(f"expected a hello, got {type(frame).__name__}")
    if frame.protocol < wire.MIN_PROTOCOL:
        text = (
            f"megabus agent too old (protocol {frame.protocol}, node needs "
            f"{wire.MIN_PROTOCOL}) -- please update"
        )
        writer.write(wire.encode(wire.TooOld(error=text)))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        raise HandshakeError(text, too_old=True)
    if not frame.client.uuid:
        raise HandshakeError("hello without a uuid")
    return frame
