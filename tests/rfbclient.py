"""A plain VNC client for the tests, written apart from megabus's own (RFC 6143).

It speaks to a VM's ``vnc_port`` as any viewer would: protocol 3.8,
security None, a shared session, 32-bit pixels, Raw encoding only. It reads
the whole framebuffer and sends key and pointer events, nothing more.
"""

from __future__ import annotations

import asyncio
import struct

#: keysyms of the characters the tests type (X11 keysymdef.h)
KEYSYMS = {"\n": 0xFF0D, " ": 0x20, "-": 0x2D, ">": 0x3E, "/": 0x2F, ".": 0x2E}


def keysym(char: str) -> int:
    """The keysym of a printable ASCII character or newline."""
    return KEYSYMS.get(char, ord(char))


class Viewer:
    """One connection to a VNC server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.width = 0
        self.height = 0
        self.desktop = ""

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Viewer:
        reader, writer = await asyncio.open_connection(host, port)
        v = cls(reader, writer)
        await asyncio.wait_for(v._handshake(), 10)
        return v

    async def _handshake(self) -> None:
        version = await self.reader.readexactly(12)
        assert version.startswith(b"RFB 003."), version
        self.writer.write(b"RFB 003.008\n")
        n = (await self.reader.readexactly(1))[0]
        types = await self.reader.readexactly(n)
        assert 1 in types, types
        self.writer.write(b"\x01")
        assert await self.reader.readexactly(4) == b"\x00\x00\x00\x00"
        self.writer.write(b"\x01")
        init = await self.reader.readexactly(24)
        self.width, self.height = struct.unpack(">HH", init[:4])
        (name_len,) = struct.unpack(">I", init[20:24])
        self.desktop = (await self.reader.readexactly(name_len)).decode()
        # 32 bpp, depth 24, little endian, true colour, RGB maxima 255, shifts 16/8/0
        self.writer.write(
            b"\x00\x00\x00\x00"
            + struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        )
        self.writer.write(struct.pack(">BxHi", 2, 1, 0))  # Raw only
        await self.writer.drain()

    async def framebuffer(self) -> bytes:
        """The whole screen as RGB bytes (width * height * 3)."""
        self.writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        await self.writer.drain()
        fb = bytearray(self.width * self.height * 3)
        while True:
            kind = (await self.reader.readexactly(1))[0]
            if kind == 0:
                break
            if kind == 2:  # bell
                continue
            raise AssertionError(f"unexpected server message {kind}")
        (count,) = struct.unpack(">xH", await self.reader.readexactly(3))
        for _ in range(count):
            x, y, w, h, enc = struct.unpack(">HHHHi", await self.reader.readexactly(12))
            assert enc == 0, enc
            data = await self.reader.readexactly(w * h * 4)
            rgb = bytearray(w * h * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = data[2::4], data[1::4], data[0::4]
            for row in range(h):
                o = ((y + row) * self.width + x) * 3
                fb[o : o + w * 3] = rgb[row * w * 3 : (row + 1) * w * 3]
        return bytes(fb)

    async def key(self, sym: int, down: bool) -> None:
        self.writer.write(struct.pack(">BBxxI", 4, int(down), sym))
        await self.writer.drain()

    async def type(self, text: str) -> None:
        """Press and release each character's key (no shift: lower case only)."""
        for char in text:
            await self.key(keysym(char), True)
            await self.key(keysym(char), False)

    async def pointer(self, mask: int, x: int, y: int) -> None:
        self.writer.write(struct.pack(">BBHH", 5, mask, x, y))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
