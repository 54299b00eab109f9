"""The parts of RFB (VNC, RFC 6143) megabus speaks: client messages and a client.

* :class:`ClientStream` follows what a VNC client sends (handshake, then
  messages) chunk by chunk, so the shim can hand each key and pointer event to
  a kb recording while the bytes themselves pass through untouched;
* :class:`Client` is an asyncio RFB client (security None, 32-bit true
  colour, Raw and DesktopSize encodings): playback writes events with it,
  framebuffer recording and ``WaitForIt`` read the screen with it.

Hand-written: RFB's framing is a few fixed layouts, and no maintained Python
library offers an asyncio client or an incremental client-message parser.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from megabus.handlers.vnc import _keysym

#: Seconds one read of the handshake may take.
HANDSHAKE_TIMEOUT = 10.0

SET_PIXEL_FORMAT = 0
SET_ENCODINGS = 2
FB_UPDATE_REQUEST = 3
KEY_EVENT = 4
POINTER_EVENT = 5
CLIENT_CUT_TEXT = 6
ENABLE_CONTINUOUS = 150
CLIENT_FENCE = 248
QEMU_MESSAGE = 255

RAW_ENCODING = 0
DESKTOP_SIZE = -223

#: 32 bits per pixel, depth 24, true colour, little endian, red at bit 16 (BGRX bytes).
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class RfbError(Exception):
    """The peer broke the protocol or refused us."""


@dataclass(frozen=True)
class KeyEvent:
    """A key press or release (RFB KeyEvent)."""

    down: bool
    keysym: int

    def __str__(self) -> str:
        """2.8's text: ``KeyEvent,<down>,<keysym name>``."""
        return f"KeyEvent,{'true' if self.down else 'false'},{_keysym.name(self.keysym)}"

    def encode(self) -> bytes:
        """The message on the wire."""
        return struct.pack(">BBxxI", KEY_EVENT, 1 if self.down else 0, self.keysym)


@dataclass(frozen=True)
class PointerEvent:
    """A pointer move or button change (RFB PointerEvent)."""

    mask: int
    x: int
    y: int

    def __str__(self) -> str:
        """2.8's text: ``PointerEvent,<mask>,<x>,<y>``."""
        return f"PointerEvent,{self.mask},{self.x},{self.y}"

    def encode(self) -> bytes:
        """The message on the wire."""
        return struct.pack(">BBHH", POINTER_EVENT, self.mask, self.x, self.y)


Event = KeyEvent | PointerEvent


class ClientStream:
    """Follows a client's bytes and yields its key and pointer events.

    A message it cannot size (an unknown type) ends the parsing for this
    connection: the bytes still pass, only the recording loses the rest.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._stage = "version"
        self._version = b""
        self.broken = ""

    def feed(self, data: bytes) -> list[Event]:
        """Add ``data``; return the events it completed."""
        events: list[Event] = []
        if not self.broken:
            self._buf += data
        while not self.broken:
            size = self._need()
            if size is None or len(self._buf) < size:
                break
            chunk = bytes(self._buf[:size])
            del self._buf[:size]
            event = self._take(chunk)
            if event is not None:
                events.append(event)
        return events

    def _need(self) -> int | None:
        """Bytes the next item needs, or None while that is not known yet."""
        buf = self._buf
        match self._stage:
            case "version":
                return 12
            case "security":
                return 1
            case "auth":
                return 16
            case "init":
                return 1
        if not buf:
            return None
        kind = buf[0]
        fixed = {
            SET_PIXEL_FORMAT: 20, FB_UPDATE_REQUEST: 10, KEY_EVENT: 8, POINTER_EVENT: 6,
            ENABLE_CONTINUOUS: 10,
        }.get(kind)  # fmt: skip
        if fixed is not None:
            return fixed
        if kind == SET_ENCODINGS:
            return None if len(buf) < 4 else 4 + 4 * struct.unpack_from(">H", buf, 2)[0]
        if kind == CLIENT_CUT_TEXT:
            if len(buf) < 8:
                return None
            (length,) = struct.unpack_from(">i", buf, 4)
            return 8 + abs(int(length))  # negative: the extended clipboard's length
        if kind == CLIENT_FENCE:
            return None if len(buf) < 9 else 9 + buf[8]
        if kind == QEMU_MESSAGE:
            return self._qemu_size()
        self.broken = f"unknown client message type {kind}"
        return None

    def _qemu_size(self) -> int | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        if buf[1] == 0:  # extended key event
            return 12
        if buf[1] == 1:  # audio: operation, then a format for op 2
            if len(buf) < 4:
                return None
            return 10 if struct.unpack_from(">H", buf, 2)[0] == 2 else 4
        self.broken = f"unknown qemu client message {buf[1]}"
        return None

    def _take(self, chunk: bytes) -> Event | None:
        match self._stage:
            case "version":
                self._version = chunk
                # 3.3: the server picks the security type and the client says nothing
                self._stage = "init" if chunk[:11] == b"RFB 003.003" else "security"
                return None
            case "security":
                self._stage = "auth" if chunk[0] == 2 else "init"
                return None
            case "auth":
                self._stage = "init"
                return None
            case "init":
                self._stage = "messages"
                return None
        kind = chunk[0]
        if kind == KEY_EVENT:
            down, sym = struct.unpack_from(">BxxI", chunk, 1)
            return KeyEvent(down != 0, sym)
        if kind == POINTER_EVENT:
            mask, x, y = struct.unpack_from(">BHH", chunk, 1)
            return PointerEvent(mask, x, y)
        if kind == QEMU_MESSAGE and chunk[1] == 0:
            down, sym = struct.unpack_from(">HI", chunk, 2)
            return KeyEvent(down != 0, sym)
        return None


if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Frame = npt.NDArray[np.uint8]


class Client:
    """An RFB client over a stream (a VM's VNC socket or a shim's port).

    Args:
        reader, writer: the connected stream.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.width = 0
        self.height = 0
        self.name = ""
        # numpy (14 MB, 50 ms to import) is loaded by the first client, not by
        # every node at start-up (issue 16's idle memory)
        import numpy as np

        #: The last screen read, height x width x 3 (RGB).
        self.frame: Frame = np.zeros((0, 0, 3), np.uint8)

    @classmethod
    async def open_unix(cls, path: str) -> Client:
        """Connect to a VNC unix socket and shake hands."""
        reader, writer = await asyncio.open_unix_connection(path)
        return await cls._start(reader, writer)

    @classmethod
    async def open_tcp(cls, host: str, port: int) -> Client:
        """Connect to a VNC TCP port and shake hands."""
        reader, writer = await asyncio.open_connection(host, port)
        return await cls._start(reader, writer)

    @classmethod
    async def _start(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Client:
        client = cls(reader, writer)
        try:
            await asyncio.wait_for(client._handshake(), HANDSHAKE_TIMEOUT)
        except BaseException:
            await client.close()
            raise
        return client

    async def _read(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as err:
            raise RfbError("vnc server closed the connection") from err

    async def _handshake(self) -> None:
        version = await self._read(12)
        if not version.startswith(b"RFB "):
            raise RfbError(f"not a vnc server: {version!r}")
        self.writer.write(b"RFB 003.008\n")
        (count,) = await self._read(1)
        if count == 0:
            (length,) = struct.unpack(">I", await self._read(4))
            reason = (await self._read(length)).decode(errors="replace")
            raise RfbError(f"vnc server refused: {reason}")
        types = await self._read(count)
        if 1 not in types:
            raise RfbError(f"vnc server wants authentication (types {list(types)})")
        self.writer.write(b"\x01")
        (result,) = struct.unpack(">I", await self._read(4))
        if result != 0:
            raise RfbError("vnc security handshake failed")
        self.writer.write(b"\x01")  # shared: other viewers stay connected
        head = await self._read(24)
        self.width, self.height = struct.unpack_from(">HH", head)
        (name_len,) = struct.unpack_from(">I", head, 20)
        self.name = (await self._read(name_len)).decode(errors="replace")
        import numpy as np

        self.frame = np.zeros((self.height, self.width, 3), np.uint8)
        self.writer.write(bytes([SET_PIXEL_FORMAT, 0, 0, 0]) + PIXEL_FORMAT)
        self.writer.write(struct.pack(">BxHii", SET_ENCODINGS, 2, RAW_ENCODING, DESKTOP_SIZE))
        await self.writer.drain()

    async def send(self, event: Event) -> None:
        """Write one key or pointer event."""
        self.writer.write(event.encode())
        await self.writer.drain()

    async def request(self, incremental: bool = False) -> None:
        """Ask for the whole screen."""
        self.writer.write(
            struct.pack(">BBHHHH", FB_UPDATE_REQUEST, int(incremental), 0, 0,
                        self.width, self.height)
        )  # fmt: skip
        await self.writer.drain()

    async def read_update(self) -> None:
        """Read server messages until one framebuffer update is applied to :attr:`frame`."""
        while True:
            (kind,) = await self._read(1)
            if kind == 0:
                await self._update()
                return
            if kind == 1:  # colour map entries: not used in true colour
                _pad, _first, count = struct.unpack(">BHH", await self._read(5))
                await self._read(6 * count)
            elif kind == 2:  # bell
                continue
            elif kind == 3:
                _pad, length = struct.unpack(">3sI", await self._read(7))
                await self._read(length)
            else:
                raise RfbError(f"unknown server message type {kind}")

    async def _update(self) -> None:
        import numpy as np

        _pad, count = struct.unpack(">BH", await self._read(3))
        for _ in range(count):
            x, y, w, h, enc = struct.unpack(">HHHHi", await self._read(12))
            if enc == RAW_ENCODING:
                data = await self._read(w * h * 4)
                pixels = np.frombuffer(data, np.uint8).reshape(h, w, 4)
                self.frame[y : y + h, x : x + w] = pixels[:, :, 2::-1]
            elif enc == DESKTOP_SIZE:
                self.width, self.height = w, h
                self.frame = np.zeros((h, w, 3), np.uint8)
            else:
                raise RfbError(f"unexpected encoding {enc}")

    async def screenshot(self, limit: float) -> Frame:
        """Request and read the whole screen."""
        await self.request()
        await asyncio.wait_for(self.read_update(), limit)
        return self.frame

    async def sync(self, limit: float = 10.0) -> None:
        """Wait until the server has handled everything sent so far.

        QEMU handles a client's messages in order, so the answer to a screen
        request comes after the events before it took effect; closing at once
        instead can lose the last events of a burst.
        """
        try:
            await self.screenshot(limit)
        except (RfbError, OSError, TimeoutError):
            pass

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, TimeoutError):
            pass
