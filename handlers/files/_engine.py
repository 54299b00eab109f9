"""``Files``: 2.8's iomeshage on NATS (info, get, parts, queue, status, resume).

A ``get`` asks every live node what it has of a path (``FileInfoRequest``
on ``mb.v1.file.info``), picks the version to fetch as 2.8's ``Files.use``
does (``-headnode``, ``-hashfiles``, else the first to answer), and queues
one transfer per file. At most :data:`QUEUE_LEN` files transfer at once;
each file's parts of 10 MiB are fetched in random order, a few at a time,
each from a random node that says it has that part of the same version
(2.8's ``WHOHAS``: a whole copy, or a node still fetching it), chunk by
chunk into a sparse file in ``<files>/transfer_XXXX/``. A part is checked
against its hash as it completes (a corrupt or failed part is fetched again
from another node, at most :data:`MAX_ATTEMPTS` times), and the whole file
against its hash before it takes its name. The transfer's state file in its
temporary directory records the parts done, so a node that restarts
resumes its transfers (or removes them with a clear error in the log when
no node has that version any more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import mmh3
import msgspec
import nats.errors
from nats.aio.msg import Msg

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusDecodeError, BusError, CommandError, RemoteError
from megabus.bus.messages import (
    ErrorReply,
    FileChunk,
    FileChunkRequest,
    FileEntry,
    FileInfoReply,
    FileInfoRequest,
    FilePartHave,
    FilePartQuery,
)
from megabus.bus.tasks import TaskSet
from megabus.handlers.files._hash import (
    PART_SIZE,
    Digest,
    HashIndex,
    digest_file,
    hex64,
    new_hasher,
    stat_key,
)
from megabus.handlers.files._paths import (
    TRANSFER_PREFIX,
    inside,
    is_temporary,
    make_tree,
    relative_name,
    under,
)
from megabus.handlers.files._serve import FileServer
from megabus.handlers.files._web import WebSources

logger = logging.getLogger(__name__)

#: Files transferred at once (2.8's ``QUEUE_LEN``); more wait, queued.
QUEUE_LEN = 3
#: Parts of one file fetched at once.
PARTS_AT_ONCE = 4
#: Tries per part (2.8: 3), each from a node not yet found wrong.
MAX_ATTEMPTS = 3
#: Seconds an info request waits for the live nodes that have not answered (2.8: 30).
INFO_TIMEOUT = 30.0
#: Seconds a part query waits for the live nodes' answers.
WHOHAS_TIMEOUT = 1.0
#: Seconds one chunk request waits.
CHUNK_TIMEOUT = 15.0
#: Largest chunk asked for: with a few parts in flight per file and
#: QUEUE_LEN files, what a node holds in memory stays a few tens of MB.
CHUNK_MAX = 1024 * 1024
#: The transfer's state file inside its temporary directory.
STATE_FILE = "state.json"
DATA_FILE = "data"

Peers = Callable[[], list[str]]
#: Told a transfer's name, parts done and parts in all, each time a part lands.
PartProgress = Callable[[str, int, int], None]


class TransferState(msgspec.Struct, kw_only=True):
    """What a transfer's temporary directory records, to resume after a restart."""

    name: str
    entry: FileEntry
    done: list[int] = []


@dataclass(eq=False)
class Transfer:
    """One file being fetched (a row of ``file status``)."""

    name: str
    entry: FileEntry
    tempdir: str
    sources: dict[str, FileEntry]
    done: set[int] = field(default_factory=set)
    queued: bool = True
    #: Told of each part that lands (``fetch`` callers that report progress).
    watchers: list[PartProgress] = field(default_factory=list)
    #: Saves of the state file one at a time (the newest snapshot lands last).
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)
    finished: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def numparts(self) -> int:
        return len(self.entry.parts)

    def row(self) -> list[str]:
        """``filename | tempdir | completed | queued``, as 2.8 prints them."""
        return [
            self.name,
            self.tempdir,
            f"{len(self.done)}/{self.numparts}",
            "true" if self.queued else "false",
        ]


class _PartError(Exception):
    """A part could not be fetched from one source."""


class Files:
    """The node's files: serving them, fetching them, their hashes.

    Args:
        node: this node's name.
        root: the files directory (2.8's ``-filepath``).
        headnode: the preferred source (2.8's ``-headnode``; empty for none).
        hash_files: 2.8's ``-hashfiles``: hash every file and keep it up to date.
    """

    def __init__(self, node: str, root: str, *, headnode: str = "", hash_files: bool = False):
        self.node = node
        self.root = root
        self.headnode = "" if headnode == node else headnode
        self.hash_files = hash_files
        self.index = HashIndex(root)
        self.server = FileServer(node, root, self.index)
        self.server.partial = self._partial
        #: ``http(s)://`` and ``tar:`` arguments.
        self.web = WebSources(root)
        self.tasks = TaskSet(f"files:{node}")
        self.transfers: dict[str, Transfer] = {}
        self._queue = asyncio.Semaphore(QUEUE_LEN)
        self._bus: Bus | None = None
        self._peers: Peers = lambda: [node]

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, bus: Bus, peers: Peers) -> None:
        """Serve this node's files and resume the transfers a previous run left."""
        self._bus = bus
        self._peers = peers
        await asyncio.to_thread(os.makedirs, self.root, exist_ok=True)
        await self.server.start(bus)
        if self.hash_files:
            await self.index.start()
        self.tasks.spawn(self._resume_all(), name="resume")

    async def stop(self) -> None:
        """Stop transfers (their temporary directories stay, to resume) and serving."""
        await self.tasks.aclose()
        await self.server.stop()
        await self.index.stop()
        for t in self.transfers.values():
            if not t.finished.done():
                t.finished.set_exception(CommandError(f"get {t.name}: node stopping"))
                t.finished.exception()
        self.transfers.clear()
        self._bus = None

    # -- what users see -----------------------------------------------------------------

    def status(self) -> list[list[str]]:
        """``file status`` rows."""
        return [t.row() for t in sorted(self.transfers.values(), key=lambda t: t.name)]

    def hash_of(self, rel: str) -> str:
        """The hash ``file list`` shows (``-hashfiles``), or ``""``."""
        return self.index.known(rel)

    async def get(self, path: str) -> list[Transfer]:
        """2.8's ``Get``: queue the transfers of ``path`` and return them (non-blocking).

        Raises:
            CommandError: 2.8's ``get <f>: file not found``, ``file already in
                flight``, or a path outside the files directory.
        """
        rel = relative_name(self.root, path)
        peers = [p for p in self._peers() if p != self.node]
        if not peers or self._bus is None:
            return []  # a mesh of one node has nothing to fetch (#1498)
        local = os.path.join(self.root, rel)
        if not self.headnode and await asyncio.to_thread(os.path.isfile, local):
            return []
        if rel in self.transfers:
            raise CommandError("file already in flight")
        try:
            offers = await self._info(rel)
        except BusError as err:
            raise CommandError(f"get {path}: {err}") from None
        names: dict[str, dict[str, FileEntry]] = {}
        for node, entries in offers.items():
            for e in entries:
                if self._acceptable(e):
                    names.setdefault(e.name, {})[node] = e
                else:
                    logger.warning("files: %s offered a bad entry %r: ignored", node, e.name)
        await self._make_tree(names)
        if not names:
            # a directory that only this node has (a container's filesystem) is here
            if await asyncio.to_thread(os.path.exists, local):
                return []
            raise CommandError(f"get {path}: file not found")
        order = list(names)
        random.shuffle(order)  # 2.8 fetches a directory's files in shuffled order
        out: list[Transfer] = []
        for name in order:
            if name in self.transfers:
                out.append(self.transfers[name])
                continue
            t = await self._plan(name, names[name])
            if t is not None:
                out.append(t)
        return out

    async def fetch(self, path: str, progress: PartProgress | None = None) -> str:
        """Fetch ``path`` and wait until it is here (2.8's ``iomHelper``); its local path.

        A transfer already running is waited for, not refused. ``progress`` is
        told of every part that lands.

        Raises:
            CommandError: the file is nowhere, or its transfer failed.
        """
        rel = relative_name(self.root, path)
        running = self.transfers.get(rel)
        transfers = [running] if running is not None else await self.get(rel)
        for t in transfers:
            if progress is not None:
                t.watchers.append(progress)
        for t in transfers:
            await asyncio.shield(t.finished)
        return os.path.join(self.root, rel)

    async def fetch_served(self, path: str, progress: PartProgress | None = None) -> str:
        """``path`` (absolute), fetched first when it lies under the files directory.

        Raises:
            CommandError: as :meth:`fetch`.
        """
        if under(self.root, path):
            await self.fetch(path, progress)
        return path

    def _acceptable(self, e: FileEntry) -> bool:
        """An offered entry names a file below the root, and its parts fit its size."""
        try:
            rel = relative_name(self.root, e.name)
        except CommandError:
            return False
        if rel != e.name or not rel or is_temporary(rel):
            return False
        if e.kind in ("dir", "link"):
            return e.size == 0 and not e.parts and (e.kind == "dir" or bool(e.link))
        return e.kind == "file" and e.size >= 0 and len(e.parts) == -(-e.size // PART_SIZE)

    async def _make_tree(self, names: dict[str, dict[str, FileEntry]]) -> None:
        """Directories and links need no transfer: made here at once (the first offer's)."""
        dirs: list[tuple[str, int]] = []
        links: list[tuple[str, str]] = []
        for name in list(names):
            first = next(iter(names[name].values()))
            if first.kind == "dir":
                dirs.append((name, first.mode))
            elif first.kind == "link":
                links.append((name, first.link))
            else:
                continue
            del names[name]
        if dirs or links:
            await asyncio.to_thread(make_tree, self.root, dirs, links)

    # -- choosing a version -------------------------------------------------------------

    async def _plan(self, name: str, offers: dict[str, FileEntry]) -> Transfer | None:
        local = os.path.join(self.root, name)
        have = await asyncio.to_thread(os.path.isfile, local)
        local_hash = ""
        if have and (self.headnode and self.hash_files):
            with contextlib.suppress(OSError):
                local_hash = (await self.index.digest(name)).hash
        chosen = self._choose(offers, have, local_hash)
        if chosen is None:
            return None
        sources = {
            n: e for n, e in offers.items() if e.hash == chosen.hash and e.size == chosen.size
        }
        return await self._queue_transfer(name, chosen, sources, done=set(), tempdir="")

    def _choose(
        self, offers: dict[str, FileEntry], have: bool, local_hash: str
    ) -> FileEntry | None:
        """2.8's ``Files.use``; ``None`` keeps the local copy."""
        if self.headnode and self.hash_files:
            head = offers.get(self.headnode)
            if head is not None:
                return head if head.hash != local_hash else None
            if have:
                return None
        elif have:
            return None
        if self.hash_files and len({e.hash for e in offers.values()}) > 1:
            return max(offers.values(), key=lambda e: e.mtime_ns)
        return next(iter(offers.values()))

    async def _info(self, rel: str) -> dict[str, list[FileEntry]]:
        """Ask every live node what it has of ``rel``; answers by node, in arrival order."""
        bus = self._bus
        if bus is None:
            return {}
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            queue.put_nowait(msg.data)

        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox, cb=on_reply)
        answered: dict[str, list[FileEntry]] = {}
        replied: set[str] = set()
        try:
            await bus.publish(
                bus.subjects.file_info(), FileInfoRequest(path=rel, node=self.node), reply=inbox
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + INFO_TIMEOUT
            while loop.time() < deadline:
                waiting = set(self._peers()) - {self.node} - replied
                if not waiting:
                    break
                try:
                    raw = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                try:
                    reply = decode(raw, FileInfoReply | ErrorReply)
                except BusDecodeError as err:
                    logger.warning("files: bad info reply: %s", err)
                    continue
                replied.add(reply.node)
                if isinstance(reply, ErrorReply):
                    logger.debug("files: info %s from %s: %s", rel, reply.node, reply.error)
                elif reply.files:
                    answered[reply.node] = reply.files
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return answered

    # -- transfers ----------------------------------------------------------------------

    async def _queue_transfer(
        self,
        name: str,
        entry: FileEntry,
        sources: dict[str, FileEntry],
        *,
        done: set[int],
        tempdir: str,
    ) -> Transfer:
        existing = self.transfers.get(name)
        if existing is not None:
            # two gets of one file raced through their info requests: one transfer
            if tempdir:
                await asyncio.to_thread(shutil.rmtree, tempdir, True)
            return existing
        # registered before any await, so that a racing get finds it
        t = Transfer(name=name, entry=entry, tempdir=tempdir, sources=dict(sources), done=done)
        self.transfers[name] = t
        try:
            if not t.tempdir:
                t.tempdir = await asyncio.to_thread(
                    tempfile.mkdtemp, prefix=TRANSFER_PREFIX, dir=self.root
                )
            await asyncio.to_thread(_save, _snapshot(t))
        except OSError as err:
            del self.transfers[name]
            raise CommandError(f"get {name}: {err.strerror or err}") from None
        self.tasks.spawn(self._run(t), name=f"get:{name}")
        return t

    async def _run(self, t: Transfer) -> None:
        try:
            async with self._queue:
                t.queued = False
                await self._transfer(t)
        except asyncio.CancelledError:
            # the node is stopping: record every part that landed, to resume with them
            # (a few hundred bytes, written at once: awaiting here could be cut short)
            with contextlib.suppress(OSError):
                _save(_snapshot(t))
            raise
        except Exception as err:
            text = str(err) if isinstance(err, CommandError) else f"get {t.name}: {err}"
            logger.error("%s", text)
            await asyncio.to_thread(shutil.rmtree, t.tempdir, True)
            if not t.finished.done():
                t.finished.set_exception(CommandError(text))
                t.finished.exception()
        else:
            logger.info("get %s: done", t.name)
            if not t.finished.done():
                t.finished.set_result(None)
        finally:
            if self.transfers.get(t.name) is t:
                del self.transfers[t.name]

    async def _transfer(self, t: Transfer) -> None:
        data = os.path.join(t.tempdir, DATA_FILE)
        await asyncio.to_thread(_prepare, data, t.entry.size)
        todo = [i for i in range(t.numparts) if i not in t.done]
        random.shuffle(todo)
        fd = await asyncio.to_thread(os.open, data, os.O_RDWR)
        try:
            workers = [
                asyncio.create_task(self._worker(t, fd, todo))
                for _ in range(min(PARTS_AT_ONCE, len(todo)))
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        finally:
            await asyncio.to_thread(os.close, fd)
        digest = await asyncio.to_thread(self._finish, t, data)
        self.index.remember(t.name, digest)

    async def _worker(self, t: Transfer, fd: int, todo: list[int]) -> None:
        while todo:
            part = todo.pop()
            await self._fetch_part(t, fd, part)
            t.done.add(part)
            for watch in t.watchers:
                watch(t.name, len(t.done), t.numparts)
            async with t.saving:
                await asyncio.to_thread(_save, _snapshot(t))

    async def _fetch_part(self, t: Transfer, fd: int, part: int) -> None:
        last = ""
        failed: set[str] = set()
        for _attempt in range(MAX_ATTEMPTS):
            # 2.8's WHOHAS: any node with the part serves it, whole copy or not
            holders = {n: h for n, h in (await self._whohas(t, part)).items() if n not in failed}
            if holders:
                node = random.choice(list(holders))
                size, mtime_ns = holders[node].size, holders[node].mtime_ns
            else:
                if not t.sources:
                    await self._refresh_sources(t)
                if not t.sources:
                    last = last or "no node has it any more"
                    break
                node = random.choice(list(t.sources))
                size, mtime_ns = t.sources[node].size, t.sources[node].mtime_ns
            try:
                await self._fetch_from(t, fd, part, node, size, mtime_ns)
                return
            except _PartError as err:
                last = str(err)
                logger.warning("get %s: part %d from %s: %s", t.name, part, node, err)
                failed.add(node)
                t.sources.pop(node, None)
        raise CommandError(f"get {t.name}: part {part}: {last}")

    async def _whohas(self, t: Transfer, part: int) -> dict[str, FilePartHave]:
        """The live nodes that say they have ``part`` of ``t``'s version."""
        bus = self._bus
        if bus is None:
            return {}
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            queue.put_nowait(msg.data)

        found: dict[str, FilePartHave] = {}
        replied: set[str] = set()
        try:
            sub = await bus.nc.subscribe(inbox := bus.nc.new_inbox(), cb=on_reply)
        except nats.errors.Error:
            return {}
        try:
            query = FilePartQuery(name=t.name, hash=t.entry.hash, part=part, node=self.node)
            await bus.publish(bus.subjects.file_whohas(), query, reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WHOHAS_TIMEOUT
            while (left := deadline - loop.time()) > 0:
                if not set(self._peers()) - {self.node} - replied:
                    break
                try:
                    raw = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                try:
                    have = decode(raw, FilePartHave)
                except BusDecodeError:
                    continue
                replied.add(have.node)
                if have.has:
                    found[have.node] = have
        except BusError as err:
            logger.debug("get %s: part query: %s", t.name, err)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return found

    def _partial(self, name: str, hash_: str) -> tuple[str, frozenset[int]] | None:
        """What :class:`FileServer` serves of this node's own transfer of a version."""
        t = self.transfers.get(name)
        if t is None or t.entry.hash != hash_ or not t.tempdir or t.queued:
            return None
        return os.path.join(t.tempdir, DATA_FILE), frozenset(t.done)

    async def _fetch_from(
        self, t: Transfer, fd: int, part: int, node: str, size: int, mtime_ns: int
    ) -> None:
        bus = self._bus
        if bus is None:
            raise _PartError("not connected")
        start = part * PART_SIZE
        end = min(t.entry.size, start + PART_SIZE)
        chunk = _chunk_size(bus.nc.max_payload)
        hasher = new_hasher()
        offset = start
        while offset < end:
            length = min(chunk, end - offset)
            req = FileChunkRequest(
                name=t.name,
                offset=offset,
                length=length,
                size=size,
                mtime_ns=mtime_ns,
                hash=t.entry.hash,
            )
            try:
                reply = await bus.request(
                    bus.subjects.node_file(node), req, FileChunk, timeout=CHUNK_TIMEOUT
                )
            except RemoteError as err:
                raise _PartError(str(err)) from None
            except BusError as err:
                raise _PartError(str(err)) from None
            if len(reply.data) != length:
                raise _PartError(f"short chunk at {offset}: {len(reply.data)} of {length} bytes")
            await asyncio.to_thread(_write, fd, reply.data, offset, hasher)
            offset += length
        got = hex64(hasher)
        if got != t.entry.parts[part]:
            raise _PartError(f"hash mismatch (got {got}, want {t.entry.parts[part]})")

    async def _refresh_sources(self, t: Transfer) -> None:
        """Every source failed: ask the mesh again for nodes with the same version."""
        # patient enough for a NATS server restart (nodes reconnect, heartbeats resume)
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
            offers = await self._info(t.name)
            for node, entries in offers.items():
                for e in entries:
                    if e.name == t.name and e.hash == t.entry.hash and e.size == t.entry.size:
                        t.sources[node] = e
            if t.sources:
                return
            await asyncio.sleep(delay)

    def _finish(self, t: Transfer, data: str) -> Digest:
        """Check the whole file, then give it its name (blocking: run in a thread)."""
        digest = digest_file(data)
        if digest.hash != t.entry.hash:
            raise CommandError(
                f"get {t.name}: hash mismatch (got {digest.hash}, want {t.entry.hash})"
            )
        os.chmod(data, t.entry.mode & 0o7777)
        final = os.path.join(self.root, t.name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if not inside(self.root, os.path.dirname(final)):
            # a directory on the way is a symlink out of the files directory
            raise CommandError(f"get {t.name}: outside of the files directory")
        os.replace(data, final)
        shutil.rmtree(t.tempdir, ignore_errors=True)
        return Digest(stat_key(os.stat(final)), digest.hash, digest.parts)

    # -- resuming after a restart -------------------------------------------------------

    async def _resume_all(self) -> None:
        for tempdir in await asyncio.to_thread(_leftovers, self.root):
            try:
                await self._resume(tempdir)
            except Exception as err:
                logger.error("resume %s: %s", tempdir, err)
                await asyncio.to_thread(shutil.rmtree, tempdir, True)

    async def _resume(self, tempdir: str) -> None:
        try:
            raw = await asyncio.to_thread(_read_bytes, os.path.join(tempdir, STATE_FILE))
            state = msgspec.json.decode(raw, type=TransferState)
        except (OSError, msgspec.DecodeError) as err:
            logger.warning("files: dropping transfer %s: %s", tempdir, err)
            await asyncio.to_thread(shutil.rmtree, tempdir, True)
            return
        name = state.name
        if not self._acceptable(state.entry) or state.entry.name != name:
            logger.warning("files: dropping transfer %s: bad state", tempdir)
            await asyncio.to_thread(shutil.rmtree, tempdir, True)
            return
        if name in self.transfers:
            await asyncio.to_thread(shutil.rmtree, tempdir, True)
            return
        sources: dict[str, FileEntry] = {}
        # at start the mesh may not be seen whole yet: ask again a few times
        for delay in (0.5, 1.0, 2.0, 4.0, 0.0):
            offers = await self._info(name)
            sources = {
                n: e
                for n, entries in offers.items()
                for e in entries
                if e.name == name and e.hash == state.entry.hash and e.size == state.entry.size
            }
            if sources:
                break
            await asyncio.sleep(delay)
        if not sources:
            logger.error(
                "get %s: cannot resume: no node has the version being fetched any more", name
            )
            await asyncio.to_thread(shutil.rmtree, tempdir, True)
            return
        done = await asyncio.to_thread(_verified_parts, tempdir, state)
        logger.info("get %s: resuming with %d/%d parts", name, len(done), len(state.entry.parts))
        await self._queue_transfer(name, state.entry, sources, done=done, tempdir=tempdir)


def _chunk_size(max_payload: int) -> int:
    """The largest chunk whose base64 reply fits in ``max_payload``, in 64 KiB steps."""
    fits = (max_payload - 4096) * 3 // 4
    return max(64 * 1024, min(CHUNK_MAX, fits // (64 * 1024) * (64 * 1024)))


def _prepare(path: str, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


def _write(fd: int, data: bytes, offset: int, hasher: mmh3.mmh3_x64_128) -> None:
    os.pwrite(fd, data, offset)
    hasher.update(data)


def _snapshot(t: Transfer) -> tuple[str, bytes]:
    """The state file's bytes, taken in the event loop (workers add parts meanwhile)."""
    state = TransferState(name=t.name, entry=t.entry, done=sorted(t.done))
    return t.tempdir, msgspec.json.encode(state)


def _save(snapshot: tuple[str, bytes]) -> None:
    tempdir, data = snapshot
    tmp = os.path.join(tempdir, STATE_FILE + ".new")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(tempdir, STATE_FILE))


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _leftovers(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [
        os.path.join(root, n)
        for n in sorted(names)
        if n.startswith(TRANSFER_PREFIX) and os.path.isdir(os.path.join(root, n))
    ]


def _verified_parts(tempdir: str, state: TransferState) -> set[int]:
    """The parts recorded as done whose bytes still match their hash."""
    data = os.path.join(tempdir, DATA_FILE)
    done: set[int] = set()
    try:
        f = open(data, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return done
    with f:
        for part in state.done:
            if part >= len(state.entry.parts):
                continue
            f.seek(part * PART_SIZE)
            h = new_hasher()
            left = min(PART_SIZE, state.entry.size - part * PART_SIZE)
            while left > 0:
                buf = f.read(min(left, 1024 * 1024))
                if not buf:
                    break
                h.update(buf)
                left -= len(buf)
            if left == 0 and hex64(h) == state.entry.parts[part]:
                done.add(part)
    return done
