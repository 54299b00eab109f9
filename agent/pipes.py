"""cc stdio in the guest: a command's stdin, stdout and stderr on the node's pipes.

``cc exec stdin=in stdout=out <cmd>`` (2.8's miniccc plumbing): the agent
asks the node for one reader of ``in`` and one writer of ``out`` (shared by
every command of this agent that names them, as 2.8 shares them), feeds what
the reader gets to the program's stdin, and sends each line the program
writes as one value. A stream that is not piped is captured as usual.

The node must say it carries pipes (``Welcome.features``); an older node does
not, and a command that names pipes then fails with a clear error instead of
waiting for input that never comes. After a redial the agent opens its
readers and writers again; what was written while it was away is lost, as a
pipe with no readers loses it.
"""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.
# ruff: noqa: UP041

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from megabus.agent.exec import Processes, clip
from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

Send = Callable[[wire.Frame], Awaitable[None]]


class PipeLinks:
    """The agent's readers and writers on the node's pipes, by pipe name."""

    def __init__(self, send: Send) -> None:
        self._send_frame = send
        #: Whether the node of the current connection carries pipes.
        self.node_ok = False
        self.node = ""
        self._readers: dict[str, list[asyncio.Queue[str | None]]] = {}
        self._writers: dict[str, int] = {}

    async def _send(self, pipe: str, op: str, data: str = "") -> None:
        try:
            await self._send_frame(wire.Pipe(pipe=pipe, op=op, data=data))
        except (OSError, asyncio.TimeoutError) as err:
            # the node is away: the redial opens the readers and writers again
            logger.info("pipe %s: %s lost: %s", pipe, op, err)

    async def welcome(self, welcome: wire.Welcome) -> None:
        """A new connection: learn whether the node carries pipes; reopen what is open."""
        self.node_ok = wire.FEATURE_PIPES in welcome.features
        self.node = welcome.node
        if not self.node_ok:
            return
        for pipe in list(self._readers):
            await self._send(pipe, "new_reader")
        for pipe in list(self._writers):
            await self._send(pipe, "new_writer")

    async def open_reader(self, pipe: str) -> asyncio.Queue[str | None]:
        """A queue of what ``pipe`` carries; ``None`` when the pipe closed."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        queues = self._readers.setdefault(pipe, [])
        queues.append(queue)
        if len(queues) == 1:
            await self._send(pipe, "new_reader")
        return queue

    async def close_reader(self, pipe: str, queue: asyncio.Queue[str | None]) -> None:
        queues = self._readers.get(pipe)
        if queues is None or queue not in queues:
            return  # the node closed it first
        queues.remove(queue)
        if not queues:
            del self._readers[pipe]
            await self._send(pipe, "close_reader")

    async def open_writer(self, pipe: str) -> None:
        self._writers[pipe] = self._writers.get(pipe, 0) + 1
        if self._writers[pipe] == 1:
            await self._send(pipe, "new_writer")

    async def write(self, pipe: str, data: str) -> None:
        await self._send(pipe, "data", data)

    async def close_writer(self, pipe: str) -> None:
        left = self._writers.get(pipe, 0) - 1
        if left > 0:
            self._writers[pipe] = left
            return
        self._writers.pop(pipe, None)
        await self._send(pipe, "close_writer")

    def on_frame(self, frame: wire.Pipe) -> None:
        """Input for the readers of ``frame.pipe``, or the end of it."""
        if frame.op == "data":
            for queue in self._readers.get(frame.pipe, []):
                queue.put_nowait(frame.data)
        elif frame.op == "close_reader":
            for queue in self._readers.pop(frame.pipe, []):
                queue.put_nowait(None)
        else:
            logger.warning("pipe %s: unexpected op %r from the node", frame.pipe, frame.op)


async def _pieces(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Lines of ``stream``; a line longer than the stream's limit comes in pieces."""
    while True:
        try:
            data = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:
            if err.partial:
                yield err.partial
            return
        except asyncio.LimitOverrunError as err:
            data = await stream.readexactly(err.consumed)
        yield data


async def _feed(queue: asyncio.Queue[str | None], stdin: asyncio.StreamWriter) -> None:
    try:
        while True:
            value = await queue.get()
            if value is None:
                break  # the pipe is gone: the program sees the end of its input
            stdin.write(value.encode())
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program stopped reading
    finally:
        stdin.close()


async def _drain(stream: asyncio.StreamReader, links: PipeLinks, pipe: str) -> bytes:
    """Send each line of ``stream`` to ``pipe``, or collect it all when there is no pipe."""
    collected = bytearray()
    async for piece in _pieces(stream):
        if pipe:
            await links.write(pipe, piece.decode(errors="replace"))
        elif len(collected) <= wire.MAX_OUTPUT:
            collected += piece
    return bytes(collected)


async def run_piped(
    processes: Processes, links: PipeLinks, cmd: wire.Command
) -> tuple[str, str, int]:
    """Run ``cmd`` with its stdio on pipes: (stdout, stderr, exit code) of what was not piped.

    A background command returns at once, its plumbing closed when it exits.
    """
    named = " ".join(
        f"{k}={v}" for k, v in (("stdin", cmd.stdin), ("stdout", cmd.stdout),
                                ("stderr", cmd.stderr)) if v
    )  # fmt: skip
    if not links.node_ok:
        return "", f"megabus agent: node {links.node or '?'} does not carry pipes ({named})", -1
    queue = await links.open_reader(cmd.stdin) if cmd.stdin else None
    for pipe in (cmd.stdout, cmd.stderr):
        if pipe:
            await links.open_writer(pipe)

    async def unplumb() -> None:
        if queue is not None:
            await links.close_reader(cmd.stdin, queue)
        for pipe in (cmd.stdout, cmd.stderr):
            if pipe:
                await links.close_writer(pipe)

    try:
        proc = await asyncio.create_subprocess_exec(
            *processes.argv(cmd.command),
            stdin=asyncio.subprocess.PIPE if queue is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=wire.PIPE_PIECE,
        )
    except OSError as err:
        await unplumb()
        return "", str(err), -1
    assert proc.stdout is not None
    assert proc.stderr is not None
    feeder = None
    if queue is not None:
        assert proc.stdin is not None
        feeder = asyncio.ensure_future(_feed(queue, proc.stdin))
    outputs = asyncio.gather(
        _drain(proc.stdout, links, cmd.stdout), _drain(proc.stderr, links, cmd.stderr)
    )

    async def finish() -> tuple[str, str, int]:
        try:
            out, err = await outputs
            code = await proc.wait()
        finally:
            if feeder is not None:
                feeder.cancel()
            await unplumb()
        return clip(out), clip(err), code

    if cmd.background:

        async def background() -> None:
            out, err, code = await finish()
            logger.info("background %s exited (%d): %s %s", cmd.command, code, out, err)

        processes.track(cmd.command, proc, background())
        return "", "", 0
    return await finish()


__all__ = ["PipeLinks", "run_piped"]
