"""A container's console: the pty master, served on ``<inst>/console`` and a TCP port.

As in 2.8: everything the container writes goes to a 1920-byte scrollback
(80x24) and to every connected client; a new client first gets the
scrollback; what clients type goes to the pty. The TCP listener takes any
address on a kernel-chosen port (``console_port`` in ``vm info``), as 2.8's
``:0`` does; it is dual-stack where the host has IPv6.

The container monitor (:mod:`container_monitor`, the shim's parent process)
runs it, not the node, so the console and the shell on it outlive a node
killed with SIGKILL. Standard library only, like the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket

logger = logging.getLogger(__name__)

SCROLLBACK = 1920
READ_SIZE = 4096


def _tcp_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        addr: tuple[str, int] = ("::", 0)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = ("0.0.0.0", 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class Console:
    """Serves one pty master; owns it and closes it in :meth:`close`."""

    def __init__(self, master: int, unix_path: str, name: str) -> None:
        self.master = master
        self.unix_path = unix_path
        self.name = name
        self.port = 0
        self.scrollback = bytearray()
        self._clients: set[asyncio.StreamWriter] = set()
        self._servers: list[asyncio.Server] = []
        self._socks: list[socket.socket] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._reading = False
        self._closed = False

    def bind(self) -> None:
        """Make the listening sockets now (blocking; a failure is logged, as in 2.8).

        Separate from :meth:`start` so the container monitor can bind before it
        leaves the host's network namespace: a socket stays in the namespace it
        was made in, so the TCP port is the host's.
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.unix_path)
                sock.listen(16)
            except OSError:
                sock.close()
                raise
            self._socks.append(sock)
        except OSError as err:
            logger.error("could not start unix domain socket console on %s: %s", self.name, err)
        try:
            sock = _tcp_socket()
            sock.listen(16)
            self._socks.append(sock)
            self.port = int(sock.getsockname()[1])
        except OSError as err:
            logger.error("failed to open tcp socket for container console %s: %s", self.name, err)

    async def start(self) -> None:
        """Read the pty and serve the sockets (bound here unless :meth:`bind` ran)."""
        if not self._socks:
            self.bind()
        os.set_blocking(self.master, False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._on_output)
        self._reading = True
        socks, self._socks = self._socks, []
        for sock in socks:
            if sock.family == socket.AF_UNIX:
                server = await asyncio.start_unix_server(self._serve, sock=sock)
            else:
                server = await asyncio.start_server(self._serve, sock=sock)
                logger.info("container console for %s listening on port %d", self.name, self.port)
            self._servers.append(server)

    def _on_output(self) -> None:
        try:
            data = os.read(self.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as err:
            # EIO: every slave end is closed, the container is gone
            if err.errno != errno.EIO:
                logger.debug("console %s: %s", self.name, err)
            data = b""
        if not data:
            self._stop_reading()
            return
        self.scrollback += data
        del self.scrollback[:-SCROLLBACK]
        for w in list(self._clients):
            if w.is_closing():
                self._clients.discard(w)
            else:
                w.write(data)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            asyncio.get_running_loop().remove_reader(self.master)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        logger.info("new console connection for %s", self.name)
        writer.write(bytes(self.scrollback))
        self._clients.add(writer)
        try:
            while data := await reader.read(READ_SIZE):
                self._write_input(data)
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            if task is not None:
                self._handlers.discard(task)
            logger.info("console disconnection for %s", self.name)

    def _write_input(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                # the container is not reading (frozen): drop, as a full tty would
                logger.debug("console %s: input dropped", self.name)
                return
            except OSError:
                return
            view = view[n:]

    async def close(self) -> None:
        """Stop listening, drop the clients, close the pty master."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        for server in self._servers:
            server.close()
        for w in list(self._clients):
            w.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for sock in self._socks:
            sock.close()
        with contextlib.suppress(OSError):
            os.close(self.master)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)
