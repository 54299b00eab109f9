"""The daemon's unix socket, ``<-path>/minirouter``.

A client writes a config and closes its sending side (2.8's ``minirouter -u``
just wrote the file and hung up; that still works). The daemon answers, as
the lines run, one line per failure (``line N: <text>: <reason>``) and ends
with ``done <lines run> <failures>``. A client that sends more than
:data:`~.router.MAX_BYTES`, sends nothing for :data:`READ_TIMEOUT` seconds,
or comes when :data:`MAX_CLIENTS` are already connected gets one error line
and is dropped; nothing it sent is applied. Bytes that are not UTF-8 become
U+FFFD and the lines holding them fail as unknown commands.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading

from megabus.router.router import MAX_BYTES, Failure, Router, TooLargeError

logger = logging.getLogger(__name__)

#: Seconds a client may stay silent while sending its config.
READ_TIMEOUT = 30.0
#: Connections served at once (the rest are refused, not queued without end).
MAX_CLIENTS = 8
_CHUNK = 65536


class _Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        srv = self.server
        if not srv.slots.acquire(blocking=False):
            _send(conn, f"error: busy: {MAX_CLIENTS} clients already connected\n")
            return
        try:
            self._serve(conn, srv.router)
        finally:
            srv.slots.release()

    def _serve(self, conn: socket.socket, router: Router) -> None:
        conn.settimeout(READ_TIMEOUT)
        data = bytearray()
        try:
            while True:
                chunk = conn.recv(_CHUNK)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_BYTES:
                    _send(conn, f"error: config larger than {MAX_BYTES} bytes; nothing applied\n")
                    return
        except socket.timeout:  # noqa: UP041 (not TimeoutError before Python 3.10)
            _send(conn, f"error: no end of config within {READ_TIMEOUT:g}s; nothing applied\n")
            return
        except OSError as err:
            logger.warning("reading a config: %s", err)
            return
        logger.info("config of %d bytes", len(data))

        def report(f: Failure) -> None:
            _send(conn, f"{f}\n")

        try:
            done, failures = router.apply(data.decode("utf-8", errors="replace"), report)
        except TooLargeError as err:
            _send(conn, f"error: {err}\n")
            return
        _send(conn, f"done {done} {len(failures)}\n")


def _send(conn: socket.socket, text: str) -> None:
    # a 2.8-style client has hung up already: the config is applied all the same
    try:
        conn.settimeout(READ_TIMEOUT)
        conn.sendall(text.replace("\r", " ").encode(errors="replace"))
    except OSError:
        pass


class Server(socketserver.ThreadingUnixStreamServer):
    """One thread per connection; configs themselves run one at a time (``Router.lock``)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, router: Router) -> None:
        self.router = router
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(path, _Handler)
        os.chmod(path, 0o600)

    def handle_error(self, request: object, client_address: object) -> None:
        logger.exception("serving a client")
