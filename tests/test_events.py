"""Lifecycle events reach external subscribers on ``mb.v1.event.<namespace>.<kind>``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ccworld import cc_world, free_port

from megabus.bus.codec import decode
from megabus.bus.messages import Event

U1 = "e1e1e1e1-e1e1-4e1e-8e1e-e1e1e1e1e1e1"


async def next_events(sub: object, count: int) -> list[Event]:
    out = []
    async with asyncio.timeout(30):
        while len(out) < count:
            msg = await sub.next_msg(timeout=30)  # type: ignore[attr-defined]
            out.append(decode(msg.data, Event))
    return out


async def test_vm_and_cc_lifecycle_events(nats_url: str, tmp_path: Path) -> None:
    async with cc_world(nats_url, tmp_path / "node") as world:
        bus = world.bus
        vm_sub = await bus.nc.subscribe(bus.subjects.event("minimega", "vm"))
        cc_sub = await bus.nc.subscribe(bus.subjects.event("minimega", "cc"))
        await bus.nc.flush()

        await world.ok("vm launch kvm ev1")
        await world.ok("vm start ev1")
        await world.ok("vm kill ev1")
        await world.ok("vm flush")
        got = await next_events(vm_sub, 4)
        assert {e.name for e in got} == {"ev1"}
        assert {e.node for e in got} == {"ccnode"}
        steps = [(e.detail["action"], e.detail["state"]) for e in got]
        assert steps == [
            ("launch", "BUILDING"),
            ("state", "RUNNING"),
            ("state", "QUIT"),
            ("flush", "QUIT"),
        ]
        assert got[1].detail["old"] == "BUILDING"

        port = free_port()
        await world.ok(f"cc listen {port}")
        agent = await world.agent("ev", "-parent", "127.0.0.1", "-port", str(port), "-uuid", U1)
        (connect,) = await next_events(cc_sub, 1)
        assert (connect.name, connect.detail["action"]) == (U1, "connect")
        agent.kill()
        await agent.wait()
        (gone,) = await next_events(cc_sub, 1)
        assert (gone.name, gone.detail["action"]) == (U1, "disconnect")
