"""The serving side of file transfers: info answers and chunks.

Why chunked request-reply on subjects and not JetStream's Object Store: an
object store keeps a second copy of every served file in the NATS server's
storage (a 1 GB disk image doubled on the server's disk), must hold the
whole file before anyone can read it, and has one copy, so a part cannot
come from whichever node already has it. Here every node answers
``mb.v1.file.info`` with what it has, and serves chunks of its own files on
``mb.v1.node.<node>.file``; a fetching node pulls one chunk at a time per
part (it asks for the next one once the last is written), which is the flow
control: a node holds at most a few chunks in memory, however big the file,
and a slow disk slows only its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from megabus.bus.codec import decode, encode, encode_error
from megabus.bus.connection import Bus
from megabus.bus.errors import BusDecodeError, CommandError
from megabus.bus.messages import (
    FileChunk,
    FileChunkRequest,
    FileEntry,
    FileInfoReply,
    FileInfoRequest,
    FilePartHave,
    FilePartQuery,
)
from megabus.bus.tasks import TaskSet
from megabus.handlers.files._hash import PART_SIZE, HashIndex
from megabus.handlers.files._paths import (
    Tree,
    is_temporary,
    matching_tree,
    relative_name,
    servable,
)

logger = logging.getLogger(__name__)

#: Chunk reads served at once; more requests wait (each holds one chunk).
MAX_READS = 8
#: Largest chunk served, whatever a request asks.
MAX_CHUNK = 4 * 1024 * 1024

#: ``partial(name, hash)``: the data file and the parts done of this node's own
#: transfer of that version, if it runs one.
Partial = Callable[[str, str], tuple[str, frozenset[int]] | None]


def _no_partial(_name: str, _hash: str) -> tuple[str, frozenset[int]] | None:
    return None


class FileServer:
    """Answers other nodes' info and chunk requests for the files under ``root``."""

    def __init__(self, node: str, root: str, index: HashIndex) -> None:
        self.node = node
        self.root = root
        self.index = index
        self.tasks = TaskSet(f"files:serve:{node}")
        self._reads = asyncio.Semaphore(MAX_READS)
        self._bus: Bus | None = None
        self._subs: list[Subscription] = []
        #: Parts of this node's running transfers, which it serves too.
        self.partial: Partial = _no_partial

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self._subs = [
            await bus.nc.subscribe(bus.subjects.file_info(), cb=self._on_info),
            await bus.nc.subscribe(bus.subjects.node_file(self.node), cb=self._on_chunk),
            await bus.nc.subscribe(bus.subjects.file_whohas(), cb=self._on_whohas),
        ]

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("files: unsubscribe failed: %s", err)
        await self.tasks.aclose()
        self._bus = None

    # -- info ---------------------------------------------------------------------------

    async def entries(self, path: str) -> list[FileEntry]:
        """What this node has of ``path`` (a file, directory or glob), hashed.

        Raises:
            CommandError: the path leaves the files directory.
        """
        rel = relative_name(self.root, path)
        tree = await asyncio.to_thread(matching_tree, self.root, rel)
        out = await asyncio.to_thread(self._dirs_and_links, tree)
        for name in tree.files:
            try:
                st = await asyncio.to_thread(os.stat, os.path.join(self.root, name))
                digest = await self.index.digest(name)
            except OSError as err:
                logger.debug("files: info %s: %s", name, err)
                continue
            if digest.key[0] != st.st_size or digest.key[1] != st.st_mtime_ns:
                continue  # changed while hashed: the next info request sees the new version
            out.append(
                FileEntry(
                    name=name,
                    size=st.st_size,
                    mode=st.st_mode & 0o7777,
                    mtime_ns=st.st_mtime_ns,
                    hash=digest.hash,
                    parts=list(digest.parts),
                )
            )
        return out

    def _dirs_and_links(self, tree: Tree) -> list[FileEntry]:
        out = []
        for name in tree.dirs:
            with contextlib.suppress(OSError):
                mode = os.stat(os.path.join(self.root, name)).st_mode & 0o7777
                out.append(FileEntry(name=name, size=0, mode=mode, kind="dir"))
        for name in tree.links:
            with contextlib.suppress(OSError):
                target = os.readlink(os.path.join(self.root, name))
                out.append(FileEntry(name=name, size=0, kind="link", link=target))
        return out

    async def _on_info(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            req = decode(msg.data, FileInfoRequest)
        except BusDecodeError as err:
            logger.warning("files: bad info request: %s", err)
            await self._reply_error(msg.reply, f"bad info request: {err}")
            return
        if req.node == self.node:
            return
        self.tasks.spawn(self._answer_info(req, msg.reply), name="info")

    async def _answer_info(self, req: FileInfoRequest, reply: str) -> None:
        try:
            files = await self.entries(req.path)
        except CommandError as err:
            await self._reply_error(reply, str(err))
            return
        await self._reply(reply, FileInfoReply(node=self.node, files=files))

    # -- parts --------------------------------------------------------------------------

    async def _on_whohas(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            req = decode(msg.data, FilePartQuery)
        except BusDecodeError as err:
            await self._reply_error(msg.reply, f"bad part query: {err}")
            return
        if req.node == self.node:
            return
        self.tasks.spawn(self._answer_whohas(req, msg.reply), name="whohas")

    async def _answer_whohas(self, req: FilePartQuery, reply: str) -> None:
        have = FilePartHave(node=self.node)
        mine = self.partial(req.name, req.hash)
        if mine is not None:
            have.has = req.part in mine[1]
        elif not is_temporary(req.name) and self.index.known(req.name) == req.hash:
            # a whole copy this node has hashed (it answered an info request for it)
            with contextlib.suppress(OSError):
                st = await asyncio.to_thread(os.stat, os.path.join(self.root, req.name))
                have = FilePartHave(
                    node=self.node, has=True, size=st.st_size, mtime_ns=st.st_mtime_ns
                )
        await self._reply(reply, have)

    # -- chunks -------------------------------------------------------------------------

    async def _on_chunk(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            req = decode(msg.data, FileChunkRequest)
        except BusDecodeError as err:
            logger.warning("files: bad chunk request: %s", err)
            await self._reply_error(msg.reply, f"bad chunk request: {err}")
            return
        self.tasks.spawn(self._answer_chunk(req, msg.reply), name="chunk")

    async def _answer_chunk(self, req: FileChunkRequest, reply: str) -> None:
        try:
            rel = relative_name(self.root, req.name)
        except CommandError as err:
            await self._reply_error(reply, str(err))
            return
        path = os.path.join(self.root, rel)
        if not rel or is_temporary(rel) or not servable(self.root, path):
            await self._reply_error(reply, f"{req.name}: not served")
            return
        if req.offset < 0 or req.length < 0 or req.length > MAX_CHUNK:
            await self._reply_error(reply, f"{req.name}: bad range {req.offset}+{req.length}")
            return
        mine = self.partial(rel, req.hash) if req.hash else None
        if mine is None and req.hash and not req.size and self.index.known(rel) == req.hash:
            # asked of a transfer that has finished here since: the whole file is that version
            mine = (path, frozenset(range(-(-(req.offset + req.length) // PART_SIZE))))
        if mine is not None:
            await self._answer_from_transfer(req, reply, mine)
            return
        async with self._reads:
            try:
                data = await asyncio.to_thread(_read_chunk, path, req)
            except OSError as err:
                await self._reply_error(reply, f"{req.name}: {err.strerror or err}")
                return
            except _ChangedError:
                await self._reply_error(reply, f"{req.name}: changed on {self.node}")
                return
            await self._reply(reply, FileChunk(data=data))

    async def _answer_from_transfer(
        self, req: FileChunkRequest, reply: str, mine: tuple[str, frozenset[int]]
    ) -> None:
        data_path, done = mine
        first, last = req.offset // PART_SIZE, (req.offset + max(req.length, 1) - 1) // PART_SIZE
        if not all(p in done for p in range(first, last + 1)):
            await self._reply_error(reply, f"{req.name}: part not here")
            return
        async with self._reads:
            try:
                data = await asyncio.to_thread(_pread, data_path, req.offset, req.length)
            except OSError as err:
                await self._reply_error(reply, f"{req.name}: {err.strerror or err}")
                return
            await self._reply(reply, FileChunk(data=data))

    # -- replies ------------------------------------------------------------------------

    async def _reply(self, subject: str, msg: FileInfoReply | FileChunk | FilePartHave) -> None:
        bus = self._bus
        if bus is None:
            return
        data, headers = encode(msg)
        try:
            await bus.nc.publish(subject, data, headers=headers)
        except nats.errors.MaxPayloadError:
            await self._reply_error(subject, "reply too large")
        except nats.errors.Error as err:
            logger.debug("files: reply failed: %s", err)

    async def _reply_error(self, subject: str, text: str) -> None:
        bus = self._bus
        if bus is None:
            return
        data, headers = encode_error(text, node=self.node)
        try:
            await bus.nc.publish(subject, data, headers=headers)
        except nats.errors.Error as err:
            logger.debug("files: error reply failed: %s", err)


def _pread(path: str, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


class _ChangedError(Exception):
    """The file is not the version the request names."""


def _read_chunk(path: str, req: FileChunkRequest) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        if before.st_size != req.size or before.st_mtime_ns != req.mtime_ns:
            raise _ChangedError
        data = os.pread(fd, req.length, req.offset)
        after = os.fstat(fd)
        # a writer that keeps the size and mtime is caught by the part's hash instead
        if after.st_size != req.size or after.st_mtime_ns != req.mtime_ns:
            raise _ChangedError
        return data
    finally:
        os.close(fd)
