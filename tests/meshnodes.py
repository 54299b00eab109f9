"""Several real nodes in this process and a client on one real nats-server: :func:`cluster`.

The membership, fan-out, host and namespace tests use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.bus.messages import CommandReply, Response
from megabus.config.settings import Settings
from megabus.handlers.main import Node

#: Heartbeat of test nodes: three missed beats (1.5 s) survive a busy CI machine.
HEARTBEAT = 0.5
#: Seconds a cluster may take to see all of its nodes.
SETTLE = 20.0


@dataclass
class Cluster:
    """Nodes in this process and a client on the same server."""

    url: str
    client: Bus
    nodes: dict[str, Node] = field(default_factory=dict)

    async def replies(self, node: str, line: str) -> list[CommandReply]:
        return await self.client.command(node, line, idle_timeout=30.0)

    async def responses(self, node: str, line: str) -> list[Response]:
        return [r for rep in await self.replies(node, line) for r in rep.responses]

    async def text(self, node: str, line: str) -> str:
        """The rendered output without annotation."""
        replies = await self.replies(node, f".annotate false {line}")
        return "\n".join(rep.rendered for rep in replies if rep.rendered)

    async def errors(self, node: str, line: str) -> list[str]:
        return sorted(r.error for r in await self.responses(node, line) if r.error)

    async def ok(self, node: str, line: str) -> list[Response]:
        responses = await self.responses(node, line)
        assert [r.error for r in responses if r.error] == [], line
        return responses

    async def settle(self, names: Sequence[str] | None = None) -> None:
        """Wait until every node lists exactly ``names`` (default: all) as the mesh."""
        want = ",".join(sorted(names if names is not None else self.nodes))
        async with asyncio.timeout(SETTLE):
            for node in names if names is not None else self.nodes:
                while True:
                    resp = await self.responses(node, "mesh list all")
                    if sorted(resp[0].data or []) == sorted(want.split(",")):
                        break
                    await asyncio.sleep(0.05)


async def start_node(url: str, base: Path, name: str, **kw: object) -> Node:
    settings = Settings(name=name, nats=[url], base=str(base / name), heartbeat=HEARTBEAT)
    for key, value in kw.items():
        setattr(settings, key, value)
    node = Node(settings)
    await node.start()
    return node


@contextlib.asynccontextmanager
async def cluster(
    url: str, base: Path, names: Sequence[str], **kw: object
) -> AsyncIterator[Cluster]:
    """Start ``names`` as nodes on ``url`` and wait until they all see each other."""
    client = await Bus.connect([url], name="client")
    c = Cluster(url=url, client=client)
    try:
        for name in names:
            c.nodes[name] = await start_node(url, base, name, **kw)
        await c.settle()
        yield c
    finally:
        for node in c.nodes.values():
            await node.stop()
        await client.close()
