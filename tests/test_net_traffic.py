"""Traffic through the node's bridge: VLANs separate network namespaces.

Three network namespaces made here hang off one bridge by veth pairs, all
in one IP subnet: two on VLAN 101, one on VLAN 102. Only the two on 101
reach each other. Addresses are used only inside these namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from netlab import Guest
from ovsfix import ovs, unique
from procs import must, run

from megabus.handlers.net._bridges import Bridges

__all__ = ["ovs"]

pytestmark = pytest.mark.usefixtures("ovs")


@pytest.fixture
async def lab() -> AsyncIterator[tuple[Bridges, str, list[Guest]]]:
    net = Bridges()
    bridge = unique("mbl")
    guests: list[Guest] = []
    try:
        await net.get(bridge)
        for i, vlan in enumerate((101, 101, 102)):
            guest = Guest(unique("mbn"), unique("mbv"), f"10.253.0.{i + 1}")
            guests.append(guest)
            await must("ip", "netns", "add", guest.netns)
            await must(
                "ip", "link", "add", guest.link, "type", "veth",
                "peer", "name", "eth0", "netns", guest.netns,
            )  # fmt: skip
            await must("ip", "link", "set", guest.link, "up")
            inside = ("ip", "netns", "exec", guest.netns, "ip")
            await must(*inside, "addr", "add", f"{guest.ip}/24", "dev", "eth0")
            await must(*inside, "link", "set", "eth0", "up")
            await must(*inside, "link", "set", "lo", "up")
            await net.attach_link(bridge, guest.link, vlan)
        yield net, bridge, guests
    finally:
        with contextlib.suppress(Exception):
            await net.destroy_all()
        for guest in guests:
            await run("ip", "link", "del", guest.link)
            await run("ip", "netns", "del", guest.netns)


async def test_same_vlan_reaches_other_vlan_does_not(
    lab: tuple[Bridges, str, list[Guest]],
) -> None:
    net, bridge, (a, b, c) = lab
    assert net.lookup(bridge).vlans() == [101, 102]  # type: ignore[union-attr]
    assert await a.ping(b)
    assert await b.ping(a)
    assert not await a.ping(c)
    assert not await c.ping(b)


async def test_moving_a_guest_to_the_other_vlan_moves_its_reach(
    lab: tuple[Bridges, str, list[Guest]],
) -> None:
    net, _, (a, b, c) = lab
    # what 2.8's `vm net connect` does underneath: retag the port
    switch = await net.switch()
    await switch.transact([["set", "port", c.link, "tag=101"]])
    assert await a.ping(c)
    await switch.transact([["set", "port", c.link, "tag=102"]])
    assert not await a.ping(c)
    assert await b.ping(a)
