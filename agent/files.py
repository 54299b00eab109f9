"""File transfer on the agent side: fetch ``cc send`` files, push ``cc recv`` files."""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.
# ruff: noqa: UP041

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import BinaryIO

from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

#: Seconds to wait for the next chunk of a file before giving up on it.
CHUNK_TIMEOUT = 60.0

Send = Callable[[wire.Frame], Awaitable[None]]


def safe_relative(name: str) -> str:
    """``name`` as a relative path without ``..`` (``ValueError`` otherwise)."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"unsafe path: {name!r}")
    return os.path.join(*parts)


class Downloads:
    """``cc send`` files coming from the node, one queue of chunks per file being fetched."""

    def __init__(self, files_dir: str) -> None:
        self.files_dir = files_dir
        self._queues: dict[str, asyncio.Queue[wire.FileData]] = {}

    def on_chunk(self, frame: wire.FileData) -> None:
        queue = self._queues.get(frame.name)
        if queue is None:
            logger.warning("unexpected file chunk for %s", frame.name)
            return
        queue.put_nowait(frame)

    async def fetch(self, send: Send, cmd_id: int, name: str) -> str | None:
        """Fetch ``name`` into the files directory; an error text, or ``None`` when it arrived."""
        try:
            dest = os.path.join(self.files_dir, safe_relative(name))
        except ValueError as err:
            return str(err)
        queue: asyncio.Queue[wire.FileData] = asyncio.Queue()
        self._queues[name] = queue
        tmp = dest + ".part"
        try:
            await send(wire.FileRequest(id=cmd_id, name=name))
            fh = await asyncio.to_thread(_create, tmp)
            try:
                while True:
                    chunk = await asyncio.wait_for(queue.get(), CHUNK_TIMEOUT)
                    if chunk.error:
                        return f"{name}: {chunk.error}"
                    await asyncio.to_thread(_write_at, fh, chunk.offset, chunk.data)
                    if chunk.eof:
                        break
            finally:
                fh.close()
            await asyncio.to_thread(_finish, tmp, dest, chunk.perm)
            return None
        except (OSError, asyncio.TimeoutError) as err:
            return f"{name}: {str(err) or type(err).__name__}"
        finally:
            self._queues.pop(name, None)
            await asyncio.to_thread(_remove, tmp)


def _create(path: str) -> BinaryIO:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "wb")


def _write_at(fh: BinaryIO, offset: int, data: bytes) -> None:
    fh.seek(offset)
    fh.write(data)


def _finish(tmp: str, dest: str, perm: int) -> None:
    os.chmod(tmp, perm & 0o777 or 0o644)
    os.replace(tmp, dest)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def upload(send: Send, cmd_id: int, path: str) -> str | None:
    """Send the guest file ``path`` to the node (``cc recv``); an error text or ``None``."""
    try:
        fh = await asyncio.to_thread(open, path, "rb")
    except OSError as err:
        await send(wire.FileData(id=cmd_id, name=path, error=str(err), eof=True))
        return str(err)
    with fh:
        perm = os.fstat(fh.fileno()).st_mode & 0o777
        offset = 0
        while True:
            data = await asyncio.to_thread(fh.read, wire.CHUNK_SIZE)
            eof = len(data) < wire.CHUNK_SIZE
            await send(
                wire.FileData(id=cmd_id, name=path, offset=offset, data=data, perm=perm, eof=eof)
            )
            offset += len(data)
            if eof:
                return None
