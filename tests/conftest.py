"""Shared fixtures: real NATS (a server, a cluster, a connected Bus), test nodes, images.

The NATS fixtures are function-scoped and torn down even when the test fails,
so a test never sees another test's subjects, streams or buckets. Helpers
live in support modules beside this file (``nodes``, ``containers``,
``ccworld``, ``compat``...); no test module imports another test module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# pytest puts this folder on sys.path (rootdir conftest, no __init__.py).
from compat import require_compat
from containers import build_images
from natsd import ClusterFactory, cluster, start_server
from nodes import MiniNode, node_at
from ovsfix import ovs  # noqa: F401 (a fixture, for one_switch)

from megabus.bus.connection import Bus
from megabus.bus.server import EmbeddedServer


@pytest.fixture(scope="session", autouse=True)
def one_switch(ovs: None) -> None:  # noqa: F811 (the fixture, by name)
    """One Open vSwitch for the whole session, started before any node.

    A node where no switch runs starts a private one and stops it when it
    exits (``handlers/net/_ovsd.py``; ``test_node_switch.py`` tests that with
    a run directory of its own): test nodes coming and going would each start
    and stop the shared one under the network tests.
    """


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


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Bus]:
    """A second :class:`Bus` on :func:`nats_url`, as the front ends connect (``client``)."""
    bus = await Bus.connect([nats_url], name="client")
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def nats_js_url(tmp_path: Path) -> AsyncIterator[str]:
    """The client URL of a nats-server of this test's own (an :class:`EmbeddedServer`)."""
    async with EmbeddedServer(tmp_path / "js", port=0) as server:
        yield server.client_url


@pytest.fixture
async def node(nats_js_url: str) -> AsyncIterator[MiniNode]:
    """A test node (``nodes.node_at``) on :func:`nats_js_url`."""
    async with node_at(nats_js_url, "t1") as n:
        yield n


@pytest.fixture(scope="session")
def minicccfs() -> Path:
    """The ``minicccfs`` root, built (or found current) once per session."""
    image = build_images() / "minicccfs"
    assert (image / "init").is_file()
    return image


@pytest.fixture
async def cnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    """A test node for containers: its base is the test's folder; ``clear all`` at the end."""
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "ct", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """minimega 2.8's test scripts (``compat.COMPAT_DIR``): skips without them, fails in CI."""
    return require_compat()
