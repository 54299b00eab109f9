"""Membership and the ``mesh`` commands with real nodes on one real nats-server.

The :func:`cluster` helper here (several in-process nodes and a client) is
shared by the fan-out, host and namespace tests.
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
from megabus.handlers.node import Node

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


# -- tests ----------------------------------------------------------------------------------


async def test_nodes_find_each_other_and_mesh_lists_them(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["kn1", "kn2", "kn3"]) as c:
        assert (await c.responses("kn1", "mesh list all"))[0].response == "kn[1-3]"
        peers = (await c.responses("kn2", "mesh list peers"))[0]
        assert peers.response == "kn[1,3]"
        assert peers.data == ["kn1", "kn3"]
        listing = (await c.responses("kn3", "mesh list"))[0].response
        assert listing == ("kn1\n |--kn2\n |--kn3\nkn2\n |--kn1\n |--kn3\nkn3\n |--kn1\n |--kn2\n")
        assert (await c.responses("kn1", "mesh degree"))[0].response == "2"


async def test_mesh_status_reports_size_peers_prefix_and_port(
    nats_url: str, tmp_path: Path
) -> None:
    port = nats_url.rsplit(":", 1)[1]
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        status = (await c.responses("a", "mesh status"))[0]
        assert status.header == ["size", "degree", "peers", "context", "port"]
        assert status.tabular == [["2", "1", "1", "mb", port]]


async def test_a_stopped_node_leaves_the_mesh(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b", "c"]) as c:
        await c.nodes.pop("c").stop()
        # gone after three missed heartbeats
        await c.settle(["a", "b"])
        assert (await c.responses("b", "mesh list all"))[0].response == "a,b"


async def test_a_late_node_is_found_at_once_by_discovery(nats_url: str, tmp_path: Path) -> None:
    # heartbeats of a minute: only discovery can make the others known to the newcomer
    async with cluster(nats_url, tmp_path, ["a", "b"], heartbeat=60.0) as c:
        c.nodes["c"] = await start_node(nats_url, tmp_path, "c", heartbeat=60.0)
        resp = (await c.responses("c", "mesh list all"))[0]
        assert resp.data == ["a", "b", "c"]


async def test_mesh_commands_that_do_not_apply_say_why(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        assert await c.errors("a", "mesh degree 3") == [
            "mesh degree does not apply: NATS reaches every node from every node; "
            "the degree is the number of other live nodes"
        ]
        assert await c.errors("a", "mesh dial b") == []
        (err,) = await c.errors("a", "mesh dial nowhere")
        assert err.startswith("cannot dial nowhere: nodes join through NATS")
        (err,) = await c.errors("a", "mesh hangup b")
        assert err.startswith("cannot hang up on b:")
        assert await c.errors("a", "mesh dial a") == ["cannot dial self"]


async def test_mesh_timeout_shows_and_sets(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        assert await c.text("a", "mesh timeout") == "unlimited"
        await c.ok("a", "mesh timeout 90")
        assert await c.text("a", "mesh timeout") == "1m30s"
        assert await c.errors("a", "mesh timeout x") == [
            'strconv.Atoi: parsing "x": invalid syntax'
        ]
        await c.ok("a", "mesh timeout 0")
        assert await c.text("a", "mesh timeout") == "unlimited"


async def test_mesh_dot_writes_the_graph(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        path = tmp_path / "mesh.dot"
        await c.ok("a", f"mesh dot {path}")
        text = path.read_text()
        assert text.startswith("graph minimega {")
        assert '"a" -- "b";' in text


async def test_clear_namespace_reaches_every_node(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", "namespace exp ns add-hosts localhost")
        await c.ok("a", "namespace exp vm launch kvm v[0-3]")
        assert await c.text("b", "namespace exp .columns name vm info") != ""
        await c.ok("a", "clear namespace exp")
        # gone on b too: its VMs were killed and flushed with it
        assert await c.text("b", "namespace exp .columns name vm info") == ""
        assert await c.text("a", "namespace exp .columns name vm info") == ""
        # a namespace no node knows is still an error
        assert await c.errors("a", "clear namespace nosuch") == ["unknown namespace: nosuch"]
