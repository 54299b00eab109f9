"""File hashes: murmur3-64 of whole files and of their parts, and the index
that ``-hashfiles`` keeps up to date with watchfiles.

The hash is 2.8's: murmur3 x64 (seed 0), the first 64 bits of the 128-bit
sum printed as 16 hex digits (twmb/murmur3's ``Sum64``), so a hash that
megabus prints equals the one 2.8 printed for the same file. One pass over
a file gives the whole-file hash and one hash per part: a fetching node
checks each part as it arrives (a corrupt part is fetched again from
another source) and the whole file before it takes its name.

Digests are cached by ``(size, mtime_ns, inode)``: a source answers every
info request for a file it has already hashed at once, and a file that
changes gets a new key, never a stale hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import mmh3
import watchfiles

from megabus.bus.tasks import TaskSet
from megabus.handlers.files._paths import is_temporary

logger = logging.getLogger(__name__)

#: 2.8's ``PART_SIZE``: the unit of transfer, progress and verification.
PART_SIZE = 10 * 1024 * 1024
#: Bytes read at a time while hashing (never a whole file in memory).
READ_SIZE = 1024 * 1024


def hex64(hasher: mmh3.mmh3_x64_128) -> str:
    """twmb/murmur3's ``Sum64`` of what ``hasher`` saw, as 2.8 printed it."""
    return f"{int.from_bytes(hasher.digest()[:8], 'little'):016x}"


def new_hasher() -> mmh3.mmh3_x64_128:
    """A murmur3 x64 hasher with 2.8's seed (0)."""
    return mmh3.mmh3_x64_128(seed=0)


@dataclass(frozen=True)
class Digest:
    """The hashes of one version of a file."""

    key: tuple[int, int, int]
    hash: str
    parts: tuple[str, ...]


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """What identifies one version of a file: size, mtime (ns) and inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def digest_file(path: str) -> Digest:
    """Hash ``path`` in one streamed pass (blocking: run it in a thread)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        whole = new_hasher()
        parts: list[str] = []
        part = new_hasher()
        in_part = 0
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        while n := f.readinto(buf):
            chunk = view[:n]
            whole.update(chunk)
            pos = 0
            while pos < n:
                take = min(n - pos, PART_SIZE - in_part)
                part.update(chunk[pos : pos + take])
                in_part += take
                pos += take
                if in_part == PART_SIZE:
                    parts.append(hex64(part))
                    part, in_part = new_hasher(), 0
        if in_part:
            parts.append(hex64(part))
        return Digest(stat_key(st), hex64(whole), tuple(parts))


class HashIndex:
    """The hashes of the files under one root, computed once per version.

    :meth:`digest` hashes on demand (what a source needs to answer an info
    request). With ``-hashfiles`` :meth:`start` also hashes every file at
    start and follows the directory with watchfiles: a created or changed
    file is hashed again, a removed one dropped; transfers' temporary files
    are ignored (the merged file is hashed when it takes its name).
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._digests: dict[str, Digest] = {}
        self._pending: dict[str, asyncio.Future[Digest]] = {}
        self.tasks = TaskSet("files:hash")
        self.watching = False
        #: Called with a relative name each time the watcher (re)hashed it (tests wait on it).
        self.on_hashed: list[Callable[[str], None]] = []
        self._ready = asyncio.Event()

    def known(self, rel: str) -> str:
        """The hash of ``rel`` if the index holds one for its current version, else ``""``."""
        d = self._digests.get(rel)
        if d is None:
            return ""
        try:
            st = os.stat(os.path.join(self.root, rel))
        except OSError:
            return ""
        return d.hash if stat_key(st) == d.key else ""

    def remember(self, rel: str, digest: Digest) -> None:
        """Take a digest computed elsewhere (a transfer verified it)."""
        self._digests[rel] = digest

    async def digest(self, rel: str) -> Digest:
        """The digest of the current version of ``rel``, hashed once per version.

        Raises:
            OSError: the file cannot be read.
        """
        path = os.path.join(self.root, rel)
        st = await asyncio.to_thread(os.stat, path)
        known = self._digests.get(rel)
        if known is not None and known.key == stat_key(st):
            return known
        pending = self._pending.get(rel)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[rel] = pending
            self.tasks.spawn(self._compute(rel, path, pending), name=f"hash:{rel}")
        return await asyncio.shield(pending)

    async def _compute(self, rel: str, path: str, fut: asyncio.Future[Digest]) -> None:
        try:
            d = await asyncio.to_thread(digest_file, path)
        except asyncio.CancelledError:
            fut.cancel()  # the index is stopping: no waiter waits for ever
            raise
        except Exception as err:  # every waiter gets the failure
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # a waiter may have gone: never "exception never retrieved"
        else:
            self._digests[rel] = d
            if not fut.done():
                fut.set_result(d)
        finally:
            self._pending.pop(rel, None)

    # -- -hashfiles -------------------------------------------------------------------

    async def start(self) -> None:
        """Hash every file under the root, then follow changes (``-hashfiles``)."""
        os.makedirs(self.root, exist_ok=True)
        self.watching = True
        self.tasks.spawn(self._watch(), name="watch")
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """Return once the start-up scan is done (the watcher runs by then)."""
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop watching and hashing."""
        self.watching = False
        await self.tasks.aclose()

    async def _scan(self) -> None:
        def walk() -> list[str]:
            out = []
            for dirpath, dirs, files in os.walk(self.root):
                dirs[:] = [d for d in dirs if not is_temporary(d)]
                for name in files:
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, self.root)
                    if not is_temporary(rel):
                        with contextlib.suppress(OSError):
                            if os.path.getsize(full) > 0:  # 2.8 skips empty files
                                out.append(rel)
            return out

        for rel in await asyncio.to_thread(walk):
            await self._rehash(rel)

    async def _rehash(self, rel: str) -> None:
        try:
            await self.digest(rel)
        except OSError as err:
            logger.debug("hash %s: %s", rel, err)
            self._digests.pop(rel, None)
            return
        for cb in self.on_hashed:
            cb(rel)

    async def _watch(self) -> None:
        stop = asyncio.Event()
        # the watcher is set up before the scan, so a file written during the
        # scan is seen by one or the other
        started = asyncio.Event()

        async def scan_when_watching() -> None:
            await started.wait()
            try:
                await self._scan()
            finally:
                self._ready.set()

        self.tasks.spawn(scan_when_watching(), name="scan")
        first = True
        try:
            async for changes in watchfiles.awatch(
                self.root,
                stop_event=stop,
                watch_filter=self._wanted,
                debounce=200,
                step=50,
                rust_timeout=500,
                yield_on_timeout=True,
                recursive=True,
            ):
                if first:
                    started.set()
                    first = False
                for change, path in changes:
                    rel = path[len(self.root) :].lstrip("/")  # awatch gives paths under root
                    if change == watchfiles.Change.deleted:
                        self._digests.pop(rel, None)
                        continue
                    if await asyncio.to_thread(os.path.isfile, path):
                        await self._rehash(rel)
        finally:
            started.set()
            self._ready.set()

    def _wanted(self, _change: watchfiles.Change, path: str) -> bool:
        return not is_temporary(os.path.relpath(path, self.root))
