"""``cc tunnel`` and ``cc rtunnel`` carry TCP through a real agent, both ways.

2.8's ``cc rtunnel`` is broken (it reaches the forward handler with no VM);
ours listens in the guest and dials from the node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, free_port, wait_for

U1 = "31313131-3131-4131-8131-313131313131"


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        port = free_port()
        await w.ok(f"cc listen {port}")
        await w.agent("tcp", "-parent", "127.0.0.1", "-port", str(port), "-uuid", U1)

        async def connected() -> bool:
            return await w.clients() == {U1}

        await wait_for(connected, "the agent connected")
        yield w


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP server on loopback that answers each line upper-cased; yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def talk(port: int, text: bytes) -> bytes:
    """Connect to ``port`` (retrying while the tunnel's listener comes up) and echo once."""
    async with asyncio.timeout(20):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        try:
            writer.write(text)
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_tunnel_reaches_a_server_on_the_agents_side(world: CcWorld) -> None:
    async with echo_server() as target:
        src = free_port()
        await world.ok(f"cc tunnel {U1} {src} 127.0.0.1 {target}")
        assert await talk(src, b"through the agent\n") == b"THROUGH THE AGENT\n"
        # a second connection through the same tunnel
        assert await talk(src, b"again\n") == b"AGAIN\n"


async def test_rtunnel_reaches_a_server_on_the_nodes_side(world: CcWorld) -> None:
    async with echo_server() as target:
        src = free_port()
        await world.ok(f"cc rtunnel {src} 127.0.0.1 {target}")
        # the agent listens on src (in its guest) and dials target from the node
        assert await talk(src, b"back to the node\n") == b"BACK TO THE NODE\n"


async def test_tunnel_to_an_unknown_client_is_an_error(world: CcWorld) -> None:
    errors = [r.error for r in await world.run("cc tunnel nosuchvm 4000 127.0.0.1 80")]
    assert [e for e in errors if e] != []
