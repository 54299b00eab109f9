"""A virtio-serial port (``/dev/virtio-ports/cc``) as asyncio streams (POSIX character devices)."""

from __future__ import annotations

import asyncio
import os


async def open_serial(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the character device ``path`` for reading and writing."""
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    reader = asyncio.StreamReader(limit=2**16)
    rfile = os.fdopen(fd, "rb", buffering=0)
    wfile = os.fdopen(os.dup(fd), "wb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rfile)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wfile)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
