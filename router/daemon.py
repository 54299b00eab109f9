"""The daemon's life: take the socket, serve configs, stop cleanly on SIGTERM/SIGINT.

Like 2.8's it refuses to start when ``<-path>/minirouter`` exists, unless
``-force``; unlike 2.8 a socket nobody answers on (a daemon that crashed) is
simply taken over, so a restart loop in the image's init needs no flag. On
SIGTERM/SIGINT it stops serving, stops dnsmasq and bird and removes its
socket; addresses, routes from ``route``, the firewall and running dhclients
stay as the last config left them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from types import FrameType

from megabus.router.options import Options
from megabus.router.router import Router
from megabus.router.server import Server
from megabus.router.tags import LogTail, Tagger

logger = logging.getLogger(__name__)


class AlreadyRunningError(Exception):
    pass


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def claim_socket(path: str, force: bool) -> None:
    """Make ``path`` free for our socket (``AlreadyRunningError`` if a live daemon has it)."""
    if not os.path.lexists(path):
        return
    if _answers(path) and not force:
        raise AlreadyRunningError(
            f"minirouter appears to already be running ({path} answers), override with -force"
        )
    logger.warning("removing old socket %s", path)
    os.unlink(path)


def serve(opts: Options, force: bool = False, log: LogTail | None = None) -> int:
    """Run the daemon until a signal; its exit status."""
    os.makedirs(opts.path, mode=0o770, exist_ok=True)
    claim_socket(opts.socket, force)
    router = Router(opts)
    server = Server(opts.socket, router)
    tagger = Tagger(opts, log or LogTail()) if opts.agent else None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="minirouter-socket", daemon=True)
    thread.start()
    if tagger is not None:
        tagger.start()
    logger.info("minirouter listening on %s", opts.socket)
    try:
        while not stop.wait(1.0):
            if not thread.is_alive():
                logger.error("the socket server stopped")
                return 1
    finally:
        server.shutdown()
        server.server_close()
        if tagger is not None:
            tagger.stopping.set()
        # a config being applied finishes first: its services are then stopped cleanly
        with router.lock:
            router.stop()
        try:
            os.unlink(opts.socket)
        except OSError:
            pass
    return 0
