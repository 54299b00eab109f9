"""Membership: a node is live while its heartbeats keep coming."""

from __future__ import annotations

import asyncio

from natsd import until

from megabus.bus.connection import Bus
from megabus.bus.membership import Membership
from megabus.bus.messages import Heartbeat


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def beat(node: str, interval: float = 2.0) -> Heartbeat:
    return Heartbeat(node=node, version="0.1.0", uptime=1.0, interval=interval)


async def beat_until_seen(other: Bus, members: Membership) -> None:
    """Beat as a node does (again and again) until ``members`` counts ``other`` live."""
    async with asyncio.timeout(10):
        while "other" not in members.live():
            await other.publish(other.subjects.heartbeat("other"), beat("other", interval=2.0))
            await asyncio.sleep(0.1)


async def test_self_is_always_live(bus: Bus) -> None:
    async with Membership(bus) as members:
        assert members.live() == ["test"]


async def test_a_node_expires_after_three_silent_intervals(bus: Bus, nats_url: str) -> None:
    clock = Clock()
    other = await Bus.connect([nats_url], name="other")
    try:
        async with Membership(bus, clock=clock) as members:
            await beat_until_seen(other, members)
            clock.now += 5.9
            assert members.live() == ["other", "test"]
            clock.now += 0.2
            assert members.live() == ["test"]
            # A new beat brings it back.
            await beat_until_seen(other, members)
            assert members.heartbeats()["other"].heartbeat.interval == 2.0
    finally:
        await other.close()


async def test_garbage_on_the_heartbeat_subject_is_ignored(bus: Bus) -> None:
    async with Membership(bus) as members:
        await bus.nc.publish(bus.subjects.heartbeat("junk"), b"{not json")
        await bus.publish(bus.subjects.heartbeat("n2"), beat("n2"))
        await until(lambda: "n2" in members.live())
        assert members.live() == ["n2", "test"]


async def test_other_prefixes_are_not_members(bus: Bus, nats_url: str) -> None:
    foreign = await Bus.connect([nats_url], name="foreign", prefix="other")
    try:
        async with Membership(bus) as members:
            await foreign.publish(foreign.subjects.heartbeat("foreign"), beat("foreign"))
            await bus.publish(bus.subjects.heartbeat("n2"), beat("n2"))
            await until(lambda: "n2" in members.live())
            assert "foreign" not in members.live()
    finally:
        await foreign.close()
