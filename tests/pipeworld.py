"""Helpers for the pipe tests: a node's plumber, and waiting for ``pipe`` to show what we expect.

Pipes move values between tasks and nodes without telling the writer when
they arrived, so the tests poll ``pipe`` (as a user would) with a deadline;
they never assert on timing.
"""

from __future__ import annotations

import asyncio
import contextlib

from meshnodes import Cluster

from megabus.bus import cc_messages as wire
from megabus.handlers.main import Dispatcher, Node
from megabus.handlers.pipes import Plumber

#: Seconds a pipe table may take to show what a test expects.
LIMIT = 20.0


def plumber(node: Node) -> Plumber:
    """The pipes engine of a node running in this process."""
    executor = node.executor
    assert isinstance(executor, Dispatcher)
    return executor.state.pipes


async def pipe_rows(
    c: Cluster, node: str, columns: str = "name,readers,writers,count,previous"
) -> list[list[str]]:
    """``pipe`` on ``node`` with ``.columns``: its rows."""
    rows: list[list[str]] = []
    for r in await c.ok(node, f".columns {columns} pipe"):
        rows.extend(r.tabular or [])
    return rows


async def until_rows(
    c: Cluster,
    node: str,
    want: list[list[str]],
    columns: str = "name,readers,writers,count,previous",
    limit: float = LIMIT,
) -> None:
    """Wait until ``pipe`` on ``node`` lists exactly ``want``; fail showing the last table."""
    rows: list[list[str]] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                rows = await pipe_rows(c, node, columns)
                if rows == want:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{node}: pipe shows {rows}, want {want}") from None


async def until_row(
    c: Cluster,
    node: str,
    want: list[str],
    columns: str = "name,readers,writers,count,previous",
    limit: float = LIMIT,
) -> None:
    """Wait until ``pipe`` on ``node`` has the row ``want`` (whose first column is the name)."""
    rows: list[list[str]] = []
    try:
        async with asyncio.timeout(limit):
            while True:
                rows = await pipe_rows(c, node, columns)
                if want in rows:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{node}: pipe shows {rows}, want a row {want}") from None


class FakeAgent:
    """A hand-driven agent on a cc unix socket: it speaks the wire, frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.welcome: wire.Welcome | None = None

    @classmethod
    async def connect(cls, path: str, uuid: str, features: list[str]) -> FakeAgent:
        """Dial ``path`` and say hello with ``features`` (none: an agent from before pipes)."""
        reader, writer = await asyncio.open_unix_connection(path)
        agent = cls(reader, writer)
        writer.write(wire.MAGIC)
        await asyncio.wait_for(wire.expect_magic(reader), 5)
        await agent.send(wire.Hello(client=wire.ClientInfo(uuid=uuid), features=features))
        first = await agent.next()
        assert isinstance(first, wire.Welcome), first
        agent.welcome = first
        return agent

    async def send(self, frame: wire.Frame) -> None:
        self.writer.write(wire.encode(frame))
        await self.writer.drain()

    async def send_raw(self, body: bytes) -> None:
        """A frame body as is (one this version may not know)."""
        self.writer.write(len(body).to_bytes(4, "big") + body)
        await self.writer.drain()

    async def next(self, kind: type[wire.Frame] = wire.Frame) -> wire.AnyFrame:
        """The next frame of type ``kind``, skipping heartbeats and the others."""
        async with asyncio.timeout(LIMIT):
            while True:
                frame = await wire.read_frame(self.reader)
                if isinstance(frame, kind) and not isinstance(frame, wire.Heartbeat):
                    return frame

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
