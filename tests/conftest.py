"""Fixtures that give tests real NATS: a server, a cluster, a connected Bus.

Every fixture is function-scoped and torn down even when the test fails, so a
test never sees another test's subjects, streams or buckets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# pytest puts this folder on sys.path (rootdir conftest, no __init__.py).
from natsd import ClusterFactory, cluster, start_server

from megabus.bus.connection import Bus
from megabus.bus.server import EmbeddedServer


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """One nats-server with JetStream, its store in ``tmp_path``, on a free port."""
    server = await start_server(tmp_path / "nats")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedServer) -> str:
    """The client URL of :func:`nats_server`."""
    return nats_server.client_url


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """Factory: ``await nats_cluster(size=3)`` starts routed JetStream servers."""
    stack: list[contextlib.AbstractAsyncContextManager[list[EmbeddedServer]]] = []

    async def make(size: int = 3) -> list[EmbeddedServer]:
        cm = cluster(tmp_path / f"cluster{len(stack)}", size=size)
        servers = await cm.__aenter__()
        stack.append(cm)
        return servers

    try:
        yield make
    finally:
        while stack:
            await stack.pop().__aexit__(None, None, None)


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    """A :class:`Bus` connected to :func:`nats_url` as node ``test``."""
    b = await Bus.connect([nats_url], name="test")
    try:
        yield b
    finally:
        await b.close()
