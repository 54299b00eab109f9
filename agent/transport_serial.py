"""A virtio-serial port (``/dev/virtio-ports/cc``) as asyncio streams (POSIX character devices).

A virtio-serial port may be open only once in the guest (a second open gets
``EBUSY``), so closing the writer closes the reading side too: otherwise the
agent could never reopen the port after the node hung up.

While the host side of the port is not connected (no node on QEMU's socket:
the port polls ``POLLHUP``), reads end at once (EOF) and a write is refused
here with ``ConnectionResetError``: QEMU 7.2 throttles a port written to
while its socket is disconnected and never lets it go, which would leave
the agent mute until the VM restarts. The agent then redials.
"""

from __future__ import annotations

import asyncio
import os
import select


class SerialWriter(asyncio.StreamWriter):
    """A stream writer that also closes the port's read transport."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.BaseProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
        read_transport: asyncio.ReadTransport,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._read_transport = read_transport
        self._fd: int = transport.get_extra_info("pipe").fileno()

    def host_connected(self) -> bool:
        """Whether a node is on the host side of the port."""
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        try:
            events = poller.poll(0)
        except OSError:
            return False
        return not any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in events)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.is_closing() and not self.host_connected():
            raise ConnectionResetError("the node's side of the serial port is not connected")
        super().write(data)

    def close(self) -> None:
        self._read_transport.close()
        super().close()


async def open_serial(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the character device ``path`` for reading and writing."""
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        wfd = os.dup(fd)
    except OSError:
        os.close(fd)
        raise
    rfile = os.fdopen(fd, "rb", buffering=0)
    wfile = os.fdopen(wfd, "wb", buffering=0)
    reader = asyncio.StreamReader(limit=2**16)
    try:
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), rfile
        )
    except BaseException:
        rfile.close()
        wfile.close()
        raise
    try:
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wfile)
    except BaseException:
        read_transport.close()
        wfile.close()
        raise
    writer = SerialWriter(transport, protocol, reader, loop, read_transport)
    return reader, writer
