"""The plumber: named pipes whose readers and writers may be on any node (2.8's miniplumber).

Every node keeps its own table of pipes (mode, log, via, local readers and
writers, count, last value), as 2.8 does; a pipe is a subject family on the
bus (:meth:`megabus.bus.subjects.Subjects.pipe`) that ties the tables together:

* a write is scheduled on the writing node (mode ``all``: every reader;
  ``round-robin``/``random``: one reader of the whole cluster, found by
  asking every live node for its readers on the pipe's ``readers`` subject),
  published once on the pipe's ``data`` subject and delivered locally; every
  node that knows the pipe counts it and hands it to its own readers;
* ``pipe p via <cmd>`` makes this node the pipe's via host (announced on the
  ``via`` subject); writers elsewhere send their writes to the host
  (``<root>.node.<host>.pipe``), which runs the program once per reader;
* a pipe with no readers drops what is written to it, without error.

Core NATS, not JetStream, and plain subscriptions, not queue groups:

* pipes hold nothing (2.8 drops a message nobody reads and replays nothing to
  a reader that comes later), so a stream would only add storage, acks and a
  replay that changes the semantics, and cost throughput;
* every node that knows a pipe must see every message, since ``pipe`` shows
  per-node counts and last values (2.8's ``count`` and ``previous``); and
  round-robin must take the cluster's readers in order (2.8 sorts their IDs),
  which a queue group's random pick cannot do. So the writer schedules and
  names the reader, and one message reaches every node.

Each node listens to the whole family with one subscription
(``<root>.pipe.>``), like 2.8's meshage broadcast, so a node learns of a via
announced before it knew the pipe. A message larger than the server's max
payload goes as ordered :class:`~megabus.bus.messages.PipeChunk` pieces on the
same subject (one connection keeps them in order); beyond :data:`MAX_MESSAGE`
it is refused.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors

from megabus.bus.codec import decode, encode
from megabus.bus.errors import BusDecodeError, CommandError
from megabus.bus.messages import (
    PIPE_ALL_READERS,
    Message,
    PipeChunk,
    PipeData,
    PipeMessage,
    PipeReaders,
    PipeReadersQuery,
    PipeVia,
    PipeWrite,
)
from megabus.bus.tasks import TaskSet
from megabus.handlers.pipes import _names as names
from megabus.handlers.pipes._ends import Pipe, Reader, Writer
from megabus.handlers.pipes._pipeline import Pipeline

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from megabus.bus.connection import Bus

logger = logging.getLogger("megabus.pipes")

ALL = PIPE_ALL_READERS
#: The delivery modes, 2.8's order (``all`` is the default).
MODES = ("all", "round-robin", "random")
#: Largest value a pipe carries (after the newline 2.8 appends); larger writes are refused.
MAX_MESSAGE = 64 * 1024 * 1024
#: Seconds a round-robin or via write waits for the other nodes to name their readers.
QUERY_TIMEOUT = 1.0
#: Seconds a ``via`` program may take for one value before it is killed.
VIA_TIMEOUT = 10.0
#: Seconds to wait for the server to confirm the subscriptions.
FLUSH_TIMEOUT = 5
#: Bytes of a NATS message left for headers when sizing pieces.
HEADER_ROOM = 1024
#: Seconds after which an incomplete chunked message is forgotten.
CHUNK_TTL = 60.0

#: The live nodes of the cluster (this one included).
Peers = Callable[[], list[str]]


@dataclass(frozen=True)
class PipeInfo:
    """One row of ``pipe``."""

    name: str
    mode: str
    readers: int
    writers: int
    count: int
    via: str
    previous: str


@dataclass
class _Partial:
    parts: int
    pieces: list[bytes]
    started: float


class Plumber:
    """One node's pipes and pipelines.

    It works without a bus (one node alone, as 2.8's plumber without meshage);
    :meth:`start` ties it to the cluster.

    Args:
        node: this node's name.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        self.tasks = TaskSet(f"pipes:{node}")
        self._pipes: dict[str, Pipe] = {}
        self._pipelines: dict[str, Pipeline] = {}
        self._bus: Bus | None = None
        self._peers: Peers = lambda: [node]
        self._subs: list[Subscription] = []
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Queue[PipeReaders]] = {}
        self._chunk_ids = itertools.count(1)
        self._partials: dict[tuple[str, int], _Partial] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, bus: Bus, peers: Peers) -> None:
        """Join the cluster's pipes: listen to the pipe family and this node's pipe subject."""
        self._bus = bus
        self._peers = peers
        nc = bus.nc
        self._inbox = nc.new_inbox()
        self._subs = [
            await nc.subscribe(bus.subjects.pipes(), cb=self._on_message),
            await nc.subscribe(bus.subjects.node_pipe(self.node), cb=self._on_message),
            await nc.subscribe(f"{self._inbox}.*", cb=self._on_reply),
        ]
        # the round trip makes the server hold the subscriptions on return
        await nc.flush(timeout=FLUSH_TIMEOUT)

    async def stop(self) -> None:
        """Cancel every pipeline (their programs are killed), close every reader, leave the bus."""
        self.delete_all_pipelines()
        for pipe in self._pipes.values():
            for reader in list(pipe.readers.values()):
                reader.close()
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("pipes: unsubscribe failed: %s", err)
        self._bus = None
        self._peers = lambda: [self.node]
        await self.tasks.aclose()

    # -- the table ---------------------------------------------------------------------

    def _pipe(self, name: str) -> Pipe:
        """The pipe ``name`` (a full name), created on first use as 2.8 does."""
        pipe = self._pipes.get(name)
        if pipe is None:
            pipe = self._pipes[name] = Pipe(names.check(name))
        return pipe

    def pipes(self) -> list[PipeInfo]:
        """Every pipe this node knows, by name."""
        return [
            PipeInfo(
                name=p.name,
                mode=p.mode,
                readers=len(p.readers),
                writers=p.writers,
                count=p.count,
                via=" ".join(p.via),
                previous=p.last.strip(),
            )
            for _, p in sorted(self._pipes.items())
        ]

    def qualify(self, namespace: str, name: str) -> str:
        """The full name of pipe ``name`` typed in ``namespace`` (see :func:`names.qualify`)."""
        return names.qualify(namespace, name)

    def reader(self, name: str) -> Reader:
        """A new reader of the pipe ``name`` (a full name); close it when done."""
        pipe = self._pipe(name)
        rid = random.getrandbits(63)
        while rid in pipe.readers or rid == 0:
            rid = random.getrandbits(63)
        reader = Reader(pipe.name, rid)
        reader.on_close.append(self._reader_closed)
        pipe.readers[rid] = reader
        return reader

    def _reader_closed(self, reader: Reader) -> None:
        pipe = self._pipes.get(reader.pipe)
        if pipe is not None and pipe.readers.get(reader.id) is reader:
            del pipe.readers[reader.id]

    def writer(self, name: str) -> Writer:
        """A new writer of the pipe ``name`` (a full name); close it when done."""
        return Writer(self._pipe(name), self.write)

    def set_mode(self, name: str, mode: str) -> None:
        """``pipe <p> mode <mode>``.

        Raises:
            CommandError: not one of :data:`MODES`.
        """
        if mode not in MODES:
            raise CommandError(f"unknown mode: {mode}")
        self._pipe(name).mode = mode

    def set_log(self, name: str, on: bool) -> None:
        """``pipe <p> log true|false``: log every value that passes this node."""
        self._pipe(name).log = on

    async def set_via(self, name: str, argv: list[str]) -> None:
        """``pipe <p> via <command>...``: this node runs ``argv`` per reader (empty: no via)."""
        pipe = self._pipe(name)
        pipe.via = list(argv)
        pipe.via_host = self.node if argv else ""
        await self._publish(
            self._subject(pipe.name, "via"),
            PipeVia(pipe=pipe.name, node=self.node, host=pipe.via_host),
        )

    def delete_pipe(self, name: str) -> None:
        """``clear pipe <p>``: close its readers (their pipelines end) and forget it.

        Raises:
            CommandError: no such pipe, or it has open writers (2.8's texts).
        """
        pipe = self._pipes.get(name)
        if pipe is None:
            raise CommandError(f"no such pipe: {name}")
        if pipe.writers:
            raise CommandError("cannot delete named pipe with open writers")
        del self._pipes[name]
        for reader in list(pipe.readers.values()):
            reader.close()

    def delete_all_pipes(self) -> None:
        """``clear pipe``: delete every pipe that can be.

        Deleting a pipe ends the pipelines that read it, which closes their
        writers on other pipes; so this goes round until nothing more goes.

        Raises:
            CommandError: a pipe that still has writers (the first such, by name).
        """
        while True:
            errors: list[CommandError] = []
            before = len(self._pipes)
            for name in sorted(self._pipes):
                if name in self._pipes:
                    try:
                        self.delete_pipe(name)
                    except CommandError as err:
                        errors.append(err)
            if not self._pipes or len(self._pipes) == before:
                if errors:
                    raise errors[0]
                return

    # -- pipelines ---------------------------------------------------------------------

    async def plumb(self, production: list[str]) -> None:
        """``plumb``: start the pipeline ``production`` (full pipe names and programs).

        Raises:
            CommandError: the same pipeline exists, or a program cannot start.
        """
        name = " ".join(production)
        if name in self._pipelines:
            raise CommandError(f"pipeline already exists: {names.go_list(production)}")
        pipeline = Pipeline(self, name, production, self._pipeline_done)
        self._pipelines[name] = pipeline
        try:
            await pipeline.start()
        except OSError as err:
            pipeline.cancel()
            raise CommandError(f"plumb: {err}") from err

    def _pipeline_done(self, pipeline: Pipeline) -> None:
        if self._pipelines.get(pipeline.name) is pipeline:
            del self._pipelines[pipeline.name]

    def pipelines(self) -> list[str]:
        """The running pipelines, as 2.8 names them (the production joined by spaces), sorted."""
        return sorted(self._pipelines)

    def delete_pipeline(self, production: list[str]) -> None:
        """``clear plumb <pipeline>...``.

        Raises:
            CommandError: no such pipeline.
        """
        pipeline = self._pipelines.get(" ".join(production))
        if pipeline is None:
            raise CommandError(f"no such pipeline: {names.go_list(production)}")
        pipeline.cancel()

    def delete_all_pipelines(self) -> None:
        """``clear plumb``."""
        for pipeline in list(self._pipelines.values()):
            pipeline.cancel()

    # -- writing -----------------------------------------------------------------------

    async def write(self, name: str, value: str) -> None:
        """Write ``value`` (a line; 2.8 adds the newline) to the pipe ``name`` (a full name).

        Raises:
            CommandError: the value is larger than :data:`MAX_MESSAGE`.
        """
        pipe = self._pipe(name)
        if not value.endswith("\n"):
            value += "\n"
        if len(value) > MAX_MESSAGE // 4:  # UTF-8 takes at most 4 bytes a character
            size = len(value.encode())
            if size > MAX_MESSAGE:
                raise CommandError(
                    f"pipe {name}: a value of {size} bytes is over the {MAX_MESSAGE}-byte limit"
                )
        host = pipe.via_host
        if host and host != self.node:
            if self._bus is not None and host in self._peers():
                msg = PipeWrite(pipe=name, node=self.node, value=value)
                await self._publish(self._bus.subjects.node_pipe(host), msg)
                return
            # the via went with its host; the pipe goes on without it
            logger.warning("pipe %s: via host %s is gone; writing without its via", name, host)
            pipe.via_host = ""
        await self._write_here(pipe, value)

    async def _write_here(self, pipe: Pipe, value: str) -> None:
        target = await self._schedule(pipe)
        values: dict[int, str]
        if pipe.via:
            values = await self._via_values(pipe, value, target)
        else:
            values = {target: value}
        await self._publish(
            self._subject(pipe.name, "data"),
            PipeData(pipe=pipe.name, node=self.node, values=values),
        )
        self._apply(pipe, values)

    async def _schedule(self, pipe: Pipe) -> int:
        """2.8's ``schedule``: every reader (``ALL``), or the one reader of the cluster to pick."""
        if pipe.mode == "all":
            return ALL
        found = await self._remote_readers(pipe)
        # nothing awaits from here on, so concurrent writes take turns
        ids = sorted({*pipe.readers, *found})
        if not ids:
            return ALL
        if pipe.mode == "round-robin":
            i = bisect.bisect_right(ids, pipe.last_recipient)
            pipe.last_recipient = ids[i if i < len(ids) else 0]
            return pipe.last_recipient
        return random.choice(ids)

    async def _via_values(self, pipe: Pipe, value: str, target: int) -> dict[int, str]:
        """The value for each recipient, each through its own run of the via program."""
        if target != ALL:
            out = await self._via(pipe, value)
            return {} if out is None else {target: out}
        ids = [*pipe.readers, *await self._remote_readers(pipe)]
        if not ids:
            return {ALL: value}
        outs = await asyncio.gather(*(self._via(pipe, value) for _ in ids))
        return {rid: out for rid, out in zip(ids, outs, strict=True) if out is not None}

    async def _via(self, pipe: Pipe, value: str) -> str | None:
        """``value`` through the pipe's via program; ``None`` (logged) when the program fails."""
        argv = pipe.via
        shown = " ".join(argv)
        exe = shutil.which(argv[0])
        if exe is None:
            logger.error("pipe %s: via `%s`: %s not found in $PATH", pipe.name, shown, argv[0])
            return None
        try:
            proc = await asyncio.create_subprocess_exec(
                exe,
                *argv[1:],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            logger.error("pipe %s: via `%s` cannot start: %s", pipe.name, shown, err)
            return None
        try:
            out, err_out = await asyncio.wait_for(proc.communicate(value.encode()), VIA_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            logger.error(
                "pipe %s: via `%s` took over %gs; killed, value dropped",
                pipe.name, shown, VIA_TIMEOUT,
            )  # fmt: skip
            return None
        if proc.returncode != 0:
            status = proc.returncode or 0
            why = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            text = err_out.decode(errors="replace").strip()
            logger.error(
                "pipe %s: via `%s` failed (%s)%s; value dropped, the pipe goes on",
                pipe.name, shown, why, f": {text}" if text else "",
            )  # fmt: skip
            return None
        return out.decode(errors="replace")

    def _apply(self, pipe: Pipe, values: dict[int, str]) -> None:
        """Count one value and hand it to this node's readers among its recipients."""
        for rid, value in values.items():
            if rid == ALL:
                pipe.last = value
                for each in list(pipe.readers.values()):
                    each.deliver(value)
            else:
                reader = pipe.readers.get(rid)
                if reader is not None:
                    pipe.last = value
                    reader.deliver(value)
            if pipe.log:
                logger.info("pipe %s: %s", pipe.name, value.strip())
        pipe.count += 1

    # -- the bus -----------------------------------------------------------------------

    def _subject(self, full: str, kind: str) -> str:
        assert self._bus is not None
        namespace, name = names.split(full)
        return self._bus.subjects.pipe(namespace, name, kind)

    async def _publish(self, subject: str, msg: Message, *, reply: str = "") -> None:
        """Publish ``msg``, in ordered pieces when it is larger than the server takes."""
        bus = self._bus
        if bus is None:
            return
        data, headers = encode(msg)
        room = bus.nc.max_payload - HEADER_ROOM
        try:
            if len(data) <= room:
                await bus.nc.publish(subject, data, reply=reply, headers=headers)
                return
            # base64 in JSON: 4 bytes per 3, plus the envelope
            piece = max(1024, room * 3 // 4 - 512)
            parts = math.ceil(len(data) / piece)
            chunk_id = next(self._chunk_ids)
            for part in range(parts):
                chunk = PipeChunk(
                    node=self.node,
                    id=chunk_id,
                    part=part,
                    parts=parts,
                    data=data[part * piece : (part + 1) * piece],
                )
                body, chunk_headers = encode(chunk)
                await bus.nc.publish(subject, body, headers=chunk_headers)
        except nats.errors.Error as err:
            logger.warning("pipes: cannot publish on %s: %s", subject, err)

    async def _remote_readers(self, pipe: Pipe) -> list[int]:
        """The readers of ``pipe`` on the other live nodes (2.8's ``updateReaderCache``).

        Waits until every live node answered or :data:`QUERY_TIMEOUT` passed; a
        node that left is simply not asked, a frozen one costs the timeout.
        """
        bus = self._bus
        peers = {n for n in self._peers() if n != self.node}
        if bus is None or not peers:
            return []
        token = str(next(self._tokens))
        replies: asyncio.Queue[PipeReaders] = asyncio.Queue()
        self._waiting[token] = replies
        found: list[int] = []
        heard: set[str] = set()
        try:
            await self._publish(
                self._subject(pipe.name, "readers"),
                PipeReadersQuery(pipe=pipe.name, node=self.node),
                reply=f"{self._inbox}.{token}",
            )
            async with asyncio.timeout(QUERY_TIMEOUT):
                while not peers <= heard:
                    answer = await replies.get()
                    heard.add(answer.node)
                    found.extend(answer.readers)
        except TimeoutError:
            logger.info(
                "pipe %s: no reader count from %s within %gs",
                pipe.name, ", ".join(sorted(peers - heard)), QUERY_TIMEOUT,
            )  # fmt: skip
        finally:
            del self._waiting[token]
        return found

    async def _on_reply(self, msg: Msg) -> None:
        replies = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if replies is None:
            return  # a late answer
        try:
            answer = decode(msg.data, PipeReaders)
        except BusDecodeError as err:
            logger.debug("pipes: ignoring a bad reply: %s", err)
            return
        replies.put_nowait(answer)

    async def _on_message(self, msg: Msg) -> None:
        try:
            m: PipeMessage | None = decode(msg.data, PipeMessage)
        except BusDecodeError as err:
            logger.debug("pipes: ignoring a bad message on %s: %s", msg.subject, err)
            return
        assert m is not None
        if m.node == self.node:
            return  # our own publication, echoed back
        if isinstance(m, PipeChunk):
            m = self._reassemble(m)
            if m is None:
                return
        await self._handle(m, msg.reply)

    async def _handle(self, m: PipeMessage, reply: str) -> None:
        match m:
            case PipeData():
                pipe = self._pipes.get(m.pipe)
                if pipe is not None:  # 2.8: a node that does not know the pipe ignores it
                    self._apply(pipe, m.values)
            case PipeReadersQuery():
                known = self._pipes.get(m.pipe)
                if reply and self._bus is not None:
                    answer = PipeReaders(
                        pipe=m.pipe, node=self.node, readers=list(known.readers) if known else []
                    )
                    await self._publish(reply, answer)
            case PipeVia():
                try:
                    self._pipe(m.pipe).via_host = m.host
                except CommandError as err:
                    logger.warning("pipes: via from %s: %s", m.node, err)
            case PipeWrite():
                try:
                    await self._write_here(self._pipe(m.pipe), m.value)
                except CommandError as err:
                    logger.warning("pipes: write from %s: %s", m.node, err)
            case _:
                logger.debug("pipes: unexpected %s from %s", type(m).__name__, m.node)

    def _reassemble(self, chunk: PipeChunk) -> PipeMessage | None:
        """The message once its last piece is in; pieces come in order on one connection."""
        now = time.monotonic()
        key = (chunk.node, chunk.id)
        partial = self._partials.get(key)
        if partial is None:
            for stale in [k for k, p in self._partials.items() if now - p.started > CHUNK_TTL]:
                del self._partials[stale]
            if chunk.part != 0:
                return None  # its start went by before we listened
            partial = self._partials[key] = _Partial(chunk.parts, [], now)
        if chunk.part != len(partial.pieces) or chunk.parts != partial.parts:
            logger.warning("pipes: piece %d of %s's message %d out of order; dropped",
                           chunk.part, chunk.node, chunk.id)  # fmt: skip
            del self._partials[key]
            return None
        partial.pieces.append(chunk.data)
        if sum(len(p) for p in partial.pieces) > 2 * MAX_MESSAGE:
            logger.warning("pipes: message %d from %s is too large; dropped", chunk.id, chunk.node)
            del self._partials[key]
            return None
        if len(partial.pieces) < partial.parts:
            return None
        del self._partials[key]
        try:
            whole: PipeMessage = decode(b"".join(partial.pieces), PipeMessage)
        except BusDecodeError as err:
            logger.warning("pipes: bad chunked message from %s: %s", chunk.node, err)
            return None
        if isinstance(whole, PipeChunk):
            return None
        return whole


__all__ = [
    "ALL",
    "MAX_MESSAGE",
    "MODES",
    "Peers",
    "Pipe",
    "PipeInfo",
    "Plumber",
    "Reader",
    "Writer",
]
