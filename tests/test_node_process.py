"""``run_node``: the real dispatcher behind the bus, and shutdown on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.config.settings import Settings
from megabus.handlers.main import run_node


def settings_for(tmp_path: Path, nats_url: str) -> Settings:
    return Settings(name="n1", nats=[nats_url], base=str(tmp_path / "base"), heartbeat=0.5)


async def test_sigterm_shuts_the_node_down_in_order(tmp_path: Path, nats_url: str) -> None:
    ready = asyncio.Event()
    node = asyncio.create_task(run_node(settings_for(tmp_path, nats_url), ready=ready))
    async with asyncio.timeout(20):
        await ready.wait()
    info = tmp_path / "base" / "megabus.json"
    assert info.exists()
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(20):
        await node
    assert not info.exists()


async def test_cancelling_run_node_stops_it(tmp_path: Path, nats_url: str, bus: Bus) -> None:
    ready = asyncio.Event()
    node = asyncio.create_task(run_node(settings_for(tmp_path, nats_url), ready=ready))
    async with asyncio.timeout(20):
        await ready.wait()
    node.cancel()
    await asyncio.wait([node])
    assert node.cancelled()
    assert not (tmp_path / "base" / "megabus.json").exists()


async def test_the_real_dispatcher_answers_over_the_bus(
    tmp_path: Path, nats_url: str, bus: Bus
) -> None:
    ready = asyncio.Event()
    node = asyncio.create_task(run_node(settings_for(tmp_path, nats_url), ready=ready))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        replies = await bus.command("n1", "echo hello")
        assert replies[-1].node == "n1"
        assert not replies[-1].more
        assert "hello" in replies[-1].rendered
    finally:
        node.cancel()
        await asyncio.wait([node])
