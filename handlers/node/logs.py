"""The node's log destinations: Python logging of the ``megabus`` logger, as ``log`` sees it.

One :class:`LogControl` per node owns the handlers it installs (stderr, a
file, the ring, syslog, the bus for a log node) so that ``log`` commands, ``-level``,
``-v`` and ``-logfile`` act on the same ones, and a stopped node removes its
own handlers and no other node's.
"""

from __future__ import annotations

import collections
import logging
import logging.handlers
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text

if TYPE_CHECKING:
    from megabus.config.settings import Settings

#: The logger every megabus module logs under.
ROOT = "megabus"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: minilog's level names and Python's levels.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def level_name(level: int) -> str:
    """minilog's name of a Python level."""
    for name, value in LEVELS.items():
        if value == level:
            return name
    return logging.getLevelName(level).lower()


class _Drop(logging.Filter):
    """Drops records whose message contains any of the filter strings."""

    def __init__(self, words: list[str]) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(word in message for word in self.words)


class RingHandler(logging.Handler):
    """Keeps the last ``size`` formatted records (2.8's log ring)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@dataclass
class LogControl:
    """The node's log destinations, as ``log`` shows and changes them."""

    #: The level from the node's settings (``clear log level`` goes back to it).
    default_level: int
    level: int
    handlers: dict[str, logging.Handler] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)
    file_path: str = ""
    mesh_node: str = ""

    def __post_init__(self) -> None:
        self._drop = _Drop(self.filters)
        logging.getLogger(ROOT).setLevel(self.level)

    def add(self, name: str, handler: logging.Handler) -> None:
        """Install ``handler`` as destination ``name``, replacing an older one."""
        self.remove(name)
        handler.setLevel(self.level)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(self._drop)
        self.handlers[name] = handler
        logging.getLogger(ROOT).addHandler(handler)

    def remove(self, name: str) -> None:
        """Remove (and close) destination ``name`` if present."""
        handler = self.handlers.pop(name, None)
        if handler is not None:
            logging.getLogger(ROOT).removeHandler(handler)
            handler.close()

    def set_level(self, level: int) -> None:
        """Set the level of the logger and of every destination."""
        self.level = level
        logging.getLogger(ROOT).setLevel(level)
        for handler in self.handlers.values():
            handler.setLevel(level)

    def close(self) -> None:
        """Remove every destination (node shutdown, tests)."""
        for name in list(self.handlers):
            self.remove(name)


def setup_logging(settings: Settings) -> LogControl:
    """Create a node's :class:`LogControl` from its settings (level, verbose, logfile)."""
    level = LEVELS.get(settings.level, logging.ERROR)
    control = LogControl(default_level=level, level=level)
    if settings.verbose:
        control.add("stderr", logging.StreamHandler(sys.stderr))
    if settings.logfile:
        open_file(control, settings.logfile)
    return control


def open_file(control: LogControl, path: str) -> None:
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as err:
        raise CommandError(f"open {path}: {go_errno_text(err)}") from None
    control.add("file", handler)
    control.file_path = path


#: Where a local syslog daemon listens, in the order Go's ``log/syslog`` tries them.
SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
SYSLOG_TAG = "megabus"


class _Syslog(logging.handlers.SysLogHandler):
    """Python's syslog handler, framed as Go's ``log/syslog`` (a newline ends a TCP message)."""

    def __init__(self, address: str | tuple[str, int], socktype: int | None) -> None:
        super().__init__(
            address=address,
            facility=logging.handlers.SysLogHandler.LOG_DAEMON,
            socktype=socktype,  # type: ignore[arg-type]  # None means "try both" for unix
        )
        self.ident = f"{SYSLOG_TAG}[{os.getpid()}]: "
        self.append_nul = False
        self._tcp = socktype == socket.SOCK_STREAM

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text + "\n" if self._tcp else text


def _split_address(network: str, address: str) -> tuple[str, int]:
    """Go's ``net.Dial`` address ``host:port`` (``[::1]:514`` too), with its errors."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise CommandError(f"dial {network} {address}: address {address}: missing port in address")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or int(port) > 65535:
        raise CommandError(f"dial {network} {address}: address {address}: invalid port")
    return host or "localhost", int(port)


def open_syslog(control: LogControl, network: str, address: str) -> None:
    """2.8's ``log syslog``: ``local`` (the host's syslog socket) or ``tcp``/``udp`` to ``address``.

    Blocking: it connects (TCP) or opens the socket.
    """
    handler: _Syslog | None = None
    if network == "local":
        for path in SYSLOG_SOCKETS:
            try:
                handler = _Syslog(path, None)
                break
            except OSError:
                continue
        if handler is None:
            raise CommandError("Unix syslog delivery error")
    else:
        host, port = _split_address(network, address)
        kind = socket.SOCK_STREAM if network == "tcp" else socket.SOCK_DGRAM
        try:
            handler = _Syslog((host, port), kind)
        except socket.gaierror:
            raise CommandError(f"dial {network}: lookup {host}: no such host") from None
        except OSError as err:
            raise CommandError(f"dial {network} {address}: {go_errno_text(err)}") from None
    control.add("syslog", handler)
