"""Real nats-servers for tests: one, or a routed JetStream cluster, on free ports.

Client ports come from the server itself (port 0, parsed from its log). Route
ports of a cluster must be known before the servers start, since each server
lists the others' routes, so those are picked by binding port 0 first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import nats.js.errors

from megabus.bus.server import EmbeddedServer

#: The ``nats_cluster`` fixture: ``await nats_cluster(size)`` gives started servers.
ClusterFactory = Callable[..., Awaitable[list[EmbeddedServer]]]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(store_dir: Path, **kwargs: object) -> EmbeddedServer:
    """Start one JetStream server on a free client port."""
    server = EmbeddedServer(store_dir, port=0, **kwargs)  # type: ignore[arg-type]
    await server.start()
    return server


async def wait_jetstream(url: str, *, replicas: int = 1, within: float = 30.0) -> None:
    """Wait until JetStream on ``url`` can place a stream of ``replicas`` copies.

    A cluster answers account queries as soon as it has a meta leader, but
    places replicated streams only once every peer has joined; a probe stream
    tests the latter.
    """
    nc = await nats.connect(url, connect_timeout=2)
    js = nc.jetstream(timeout=2.0)
    probe = f"probe_{uuid.uuid4().hex}"
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    await js.add_stream(name=probe, subjects=[probe], num_replicas=replicas)
                    await js.delete_stream(probe)
                    return
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    await asyncio.sleep(0.2)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def cluster(
    base: Path, size: int = 3, name: str = "mbtest"
) -> AsyncIterator[list[EmbeddedServer]]:
    """Run ``size`` routed JetStream servers; stop all of them on exit."""
    route_ports = [free_port() for _ in range(size)]
    servers = [
        EmbeddedServer(
            base / f"n{i}",
            port=0,
            server_name=f"n{i}",
            cluster_name=name,
            cluster_port=route_ports[i],
            routes=[f"nats://127.0.0.1:{p}" for j, p in enumerate(route_ports) if j != i],
        )
        for i in range(size)
    ]
    try:
        async with asyncio.TaskGroup() as tg:
            for server in servers:
                tg.create_task(server.start())
        await wait_jetstream(servers[0].client_url, replicas=size)
        yield servers
    finally:
        for server in servers:
            await server.stop()


async def until(predicate: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``within`` seconds."""
    # Polling, because the states waited on (a heartbeat seen, a file written)
    # have no event to wait for.
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
