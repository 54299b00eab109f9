"""``megabus lognode``: collect every node's log records into one file per node.

2.8's ``-headnode`` daemon logged what other nodes sent it as
``[node: <from>] <line>``. Here the collector is its own small process: it
subscribes to ``<prefix>.v1.log.>`` and appends each record to
``<dir>/<node>.log`` (the node name made file-safe by
:func:`megabus.bus.subjects.token`, so ``../x`` stays inside ``dir``),
rotating at ``--max-bytes`` with ``--backups`` old files (``<node>.log.1`` is
the newest), as :class:`logging.handlers.RotatingFileHandler` does.

Nodes come and go without the collector noticing: it holds a subscription,
not connections to nodes, and its client reconnects to the NATS servers for
ever. A malformed record is counted and skipped. As 2.8 does, ``fatal`` from
another node is written as ``error`` (the collector does not die of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nats.aio.msg import Msg

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusConnectError, BusDecodeError, SecurityError
from megabus.bus.loop import run
from megabus.bus.messages import LogRecord
from megabus.bus.security import Credentials, TlsFiles
from megabus.bus.subjects import token
from megabus.cli.args import CLIENT_FLAGS, UsageError, parse_interspersed, resolve_target

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

#: The flags of ``megabus lognode``, besides the client ones (-nats, -prefix, -base).
LOGNODE_FLAGS: dict[str, tuple[str, bool]] = {
    **CLIENT_FLAGS,
    "dir": ("dir", True),
    "max-bytes": ("max_bytes", True),
    "backups": ("backups", True),
}


class RotatingFile:
    """One append-only log file, rotated by size (``name``, ``name.1`` ... ``name.K``).

    Args:
        path: the live file.
        max_bytes: rotate before a write would take the file past this; 0 never rotates.
        backups: old files kept; with 0 the live file is truncated instead.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh: IO[str] | None = None
        self._size = 0

    def _open(self) -> IO[str]:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._size = self._fh.tell()
        return self._fh

    def write(self, text: str) -> None:
        size = len(text.encode())
        fh = self._open()
        if self.max_bytes and self._size and self._size + size > self.max_bytes:
            self._rotate()
            fh = self._open()
        fh.write(text)
        fh.flush()
        self._size += size

    def _rotate(self) -> None:
        self.close()
        if self.backups <= 0:
            self.path.write_text("")
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def format_record(record: LogRecord) -> str:
    """One line (or several, for a traceback) as written to the node's file."""
    level = "ERROR" if record.level == "fatal" else record.level.upper()
    when = datetime.datetime.fromtimestamp(record.ts or 0).isoformat(
        sep=" ", timespec="milliseconds"
    )
    source = f" {record.logger}:" if record.logger else ""
    return f"{when} {level} [node: {record.node}]{source} {record.message}\n"


@dataclass
class LogWriter:
    """The files of one collector directory, one :class:`RotatingFile` per node."""

    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS
    files: dict[str, RotatingFile] = field(default_factory=dict)
    #: Records written and messages that were not log records.
    written: int = 0
    bad: int = 0

    def path_of(self, node: str) -> Path:
        return self.directory / f"{token(node)}.log"

    def write(self, record: LogRecord) -> None:
        """Append ``record`` to its node's file. Blocking: run it off the loop."""
        out = self.files.get(record.node)
        if out is None:
            out = self.files[record.node] = RotatingFile(
                self.path_of(record.node), self.max_bytes, self.backups
            )
        out.write(format_record(record))
        self.written += 1

    def close(self) -> None:
        for out in self.files.values():
            out.close()
        self.files.clear()


async def collect(
    urls: list[str],
    writer: LogWriter,
    *,
    prefix: str,
    stop: asyncio.Event,
    ready: Callable[[], None] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - the connect timeout per URL
    credentials: Credentials | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Write every log record of ``prefix`` until ``stop`` is set.

    Records go through one queue to one writer task, so files are written in
    arrival order and the NATS callback never blocks on the disk.

    Raises:
        BusConnectError: no server could be reached at start.
    """
    await asyncio.to_thread(writer.directory.mkdir, parents=True, exist_ok=True)
    bus = await Bus.connect(
        urls,
        name="megabus-lognode",
        prefix=prefix,
        timeout=timeout,
        credentials=credentials,
        tls=tls,
    )
    queue: asyncio.Queue[LogRecord] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        try:
            queue.put_nowait(decode(msg.data, LogRecord))
        except BusDecodeError as err:
            writer.bad += 1
            logger.debug("not a log record on %s: %s", msg.subject, err)

    async def drain() -> None:
        while True:
            record = await queue.get()
            try:
                await asyncio.to_thread(writer.write, record)
            except OSError as err:
                logger.error("cannot write the log of %s: %s", record.node, err)

    writing = asyncio.create_task(drain(), name="lognode-writer")
    try:
        await bus.nc.subscribe(bus.subjects.logs(), cb=on_msg)
        await bus.nc.flush(timeout=5)
        if ready is not None:
            ready()
        await stop.wait()
        await bus.close()  # drains the subscription: what arrived is queued
        while not queue.empty():  # noqa: ASYNC110 - the writer empties it
            await asyncio.sleep(0.01)
    finally:
        writing.cancel()
        await asyncio.wait([writing])
        with contextlib.suppress(Exception):
            await bus.close()
        await asyncio.to_thread(writer.close)


def _number(flags: dict[str, str | bool], name: str, default: int) -> int:
    raw = flags.get(name)
    if raw is None:
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise UsageError(f"invalid value {raw!r} for -{name}: expected a number") from None
    if value < 0:
        raise UsageError(f"invalid value {raw!r} for -{name}: must not be negative")
    return value


def run_lognode(args: list[str]) -> int:
    """``megabus lognode --dir D [--max-bytes N] [--backups K]``; returns the exit status."""
    flags, rest = parse_interspersed(args, LOGNODE_FLAGS)
    if rest:
        raise UsageError(f"lognode takes only flags, got {' '.join(rest)!r}")
    if not flags.get("dir") or flags.get("dir") is True:
        raise UsageError("lognode needs -dir DIR")
    writer = LogWriter(
        Path(str(flags["dir"])),
        max_bytes=_number(flags, "max_bytes", DEFAULT_MAX_BYTES),
        backups=_number(flags, "backups", DEFAULT_BACKUPS),
    )
    target = resolve_target(flags, role="watcher")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready() -> None:
            # A supervisor (or a test) waits for this line before publishing.
            print(f"lognode: writing to {writer.directory}", flush=True)

        try:
            await collect(
                target.urls,
                writer,
                prefix=target.prefix,
                stop=stop,
                ready=ready,
                timeout=target.timeout,
                credentials=target.credentials,
                tls=target.tls,
            )
        except (BusConnectError, SecurityError) as err:
            sys.stderr.write(f"megabus: {err}\n")
            return 2
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return 0

    os.makedirs(writer.directory, exist_ok=True)
    return run(main())
