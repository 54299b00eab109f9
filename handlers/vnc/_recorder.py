"""``vnc record kb|fb``: one namespace's recordings, keyed by VM name as 2.8 keys them.

* kb: every key and pointer event a client sends through the VM's shim,
  one line each, ``<ns since the previous event>:<event>`` (2.8's format, so
  2.8 plays our files and we play 2.8's);
* fb: the framebuffer, read over VNC ten times a second (a full, non-incremental
  update each time, as 2.8 asks) and stored as 2.8 does: a gzip stream of
  chunks ``<ns since the previous chunk> <length>\\r\\n<server bytes>\\r\\n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from dataclasses import dataclass, field
from typing import IO

from megabus.bus.errors import CommandError
from megabus.bus.tasks import TaskSet
from megabus.handlers.language.gotime import format_seconds
from megabus.handlers.vnc.rfb import Client, Event, RfbError

logger = logging.getLogger(__name__)

#: 2.8 asks for a frame every 100 ms.
FB_INTERVAL = 0.1
#: Bytes per fb read (2.8 reads 4 KiB; bigger chunks make the file smaller and cheaper).
FB_CHUNK = 256 * 1024


@dataclass(eq=False)
class KbRecording:
    """One VM's kb recording."""

    name: str
    file: IO[str]
    started: float = field(default_factory=time.time)
    last: int = field(default_factory=time.monotonic_ns)

    def write(self, event: Event) -> None:
        now = time.monotonic_ns()
        # one short line per key or pointer event: written in place, flushed so a
        # recording stopped by a killed node still holds what was typed
        self.file.write(f"{now - self.last}:{event}\n")
        self.file.flush()
        self.last = now


@dataclass(eq=False)
class FbRecording:
    """One VM's framebuffer recording."""

    name: str
    path: str
    client: Client
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.time)


def _open_text(path: str) -> IO[str]:
    return open(path, "w", encoding="utf-8")


def _os_error(path: str, err: OSError) -> CommandError:
    return CommandError(f"open {path}: {(err.strerror or str(err)).lower()}")


class Recorder:
    """The kb and fb recordings of one namespace on this node."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.kb: dict[str, KbRecording] = {}
        self.fb: dict[str, FbRecording] = {}
        self._tasks = TaskSet(f"vnc-record:{namespace}")

    async def record_kb(self, name: str, path: str) -> None:
        """Start recording what clients of VM ``name`` type."""
        if name in self.kb:
            raise CommandError(f"kb recording for {name} already running")
        try:
            f = await asyncio.to_thread(_open_text, path)
        except OSError as err:
            raise _os_error(path, err) from None
        if name in self.kb:  # another request won the race while the file opened
            f.close()
            raise CommandError(f"kb recording for {name} already running")
        self.kb[name] = KbRecording(name, f)

    def route(self, name: str, event: Event) -> None:
        """An event a client of VM ``name`` sent (called by the VM's shim)."""
        rec = self.kb.get(name)
        if rec is None:
            return
        try:
            rec.write(event)
        except OSError as err:
            logger.error("kb recording %s: %s; stopped", name, err)
            self.kb.pop(name, None)
            with contextlib.suppress(OSError):
                rec.file.close()

    async def record_fb(self, name: str, socket_path: str, path: str) -> None:
        """Start recording VM ``name``'s screen from its VNC socket."""
        if name in self.fb:
            raise CommandError(f"fb recording for {name} already running")
        try:
            client = await Client.open_unix(socket_path)
        except (OSError, RfbError, TimeoutError) as err:
            raise CommandError(f"dial vnc: {err}") from None
        try:
            out = await asyncio.to_thread(gzip.open, path, "wb")
        except OSError as err:
            await client.close()
            raise _os_error(path, err) from None
        if name in self.fb:
            await client.close()
            out.close()
            raise CommandError(f"fb recording for {name} already running")
        rec = FbRecording(name, path, client)
        rec.task = self._tasks.spawn(self._fb(rec, out), f"fb:{name}")
        self.fb[name] = rec

    async def _fb(self, rec: FbRecording, out: gzip.GzipFile) -> None:
        client = rec.client
        requests = self._tasks.spawn(self._fb_requests(client), f"fb-req:{rec.name}")
        prev = time.monotonic_ns()
        # gzip costs: each write runs in a thread; it must finish before the file
        # closes, even when this task is cancelled in the middle of it
        write: asyncio.Future[int] | None = None
        try:
            while data := await client.reader.read(FB_CHUNK):
                now = time.monotonic_ns()
                chunk = b"%d %d\r\n" % (now - prev, len(data)) + data + b"\r\n"
                prev = now
                write = asyncio.ensure_future(asyncio.to_thread(out.write, chunk))
                await asyncio.shield(write)
        except (OSError, ConnectionError) as err:
            logger.info("fb recording %s: %s", rec.name, err)
        finally:
            requests.cancel()
            if write is not None and not write.done():
                await asyncio.wait([write])
            await asyncio.to_thread(out.close)
            await client.close()

    async def _fb_requests(self, client: Client) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await client.request()
                await asyncio.sleep(FB_INTERVAL)

    async def stop_kb(self, name: str) -> None:
        """``vnc stop kb``."""
        rec = self.kb.pop(name, None)
        if rec is None:
            raise CommandError(f"kb recording {name} not found")
        await asyncio.to_thread(rec.file.close)

    async def stop_fb(self, name: str) -> None:
        """``vnc stop fb``: the file is complete when this returns."""
        rec = self.fb.pop(name, None)
        if rec is None:
            raise CommandError(f"fb recording {name} not found")
        await self._end_fb(rec)

    async def _end_fb(self, rec: FbRecording) -> None:
        if rec.task is not None:
            rec.task.cancel()
            # the task closes the file, after its last write (see _fb)
            with contextlib.suppress(asyncio.CancelledError):
                await rec.task

    def info(self) -> list[list[str]]:
        """``vnc`` rows: name, type, time, filename."""
        now = time.time()
        rows = [[n, "record kb", format_seconds(now - r.started), r.file.name]
                for n, r in self.kb.items()]  # fmt: skip
        rows += [[n, "record fb", format_seconds(now - r.started), r.path]
                 for n, r in self.fb.items()]  # fmt: skip
        return rows

    async def clear(self) -> None:
        """Stop every recording."""
        for name in list(self.kb):
            await self.stop_kb(name)
        for name in list(self.fb):
            await self.stop_fb(name)
        await self._tasks.aclose()
