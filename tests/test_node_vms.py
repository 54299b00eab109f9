"""A node that is stopped takes its VMs down with it, as minimega does on exit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.messages import Heartbeat
from megabus.config.settings import Settings
from megabus.handlers.main import Node


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stopping_the_node_kills_its_qemu_processes(nats_url: str, tmp_path: Path) -> None:
    node = Node(Settings(name="n1", nats=[nats_url], base=str(tmp_path / "base")))
    await node.start()
    try:
        client = await Bus.connect([nats_url], name="client")
        try:
            replies = await client.command("n1", "vm launch kvm guest[0-1]")
            assert [r.error for rep in replies for r in rep.responses if r.error] == []
            replies = await client.command("n1", ".columns pid .annotate false vm info")
            rows = replies[-1].responses[0].tabular or []
            pids = [int(row[0]) for row in rows]
        finally:
            await client.close()
        assert len(pids) == 2
        assert all(alive(pid) for pid in pids)
    finally:
        await node.stop()
    assert not any(alive(pid) for pid in pids)


async def test_heartbeats_count_the_nodes_vms(nats_url: str, tmp_path: Path) -> None:
    node = Node(Settings(name="n1", nats=[nats_url], base=str(tmp_path / "base"), heartbeat=0.2))
    await node.start()
    client = await Bus.connect([nats_url], name="client")
    try:
        sub = await client.nc.subscribe(client.subjects.heartbeat("n1"))
        await client.command("n1", "vm launch kvm a,b,c")
        async with asyncio.timeout(10):
            while True:
                msg = await sub.next_msg(timeout=5)
                if decode(msg.data, Heartbeat).vms == 3:
                    break
    finally:
        await client.close()
        await node.stop()
