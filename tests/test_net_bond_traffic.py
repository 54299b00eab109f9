"""Traffic through bonds, QinQ tunnels and a bridge capture, between network namespaces.

Guests are network namespaces with one veth into a bridge, addresses in
10.252.0.0/24 used only inside them. A bond here joins two OVS bridges by
three veth pairs (no bonding module needed: the bond is OVS's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netlab import Guest
from ovsfix import ovs, unique
from procs import must, run

from megabus.handlers.net import bonds
from megabus.handlers.net._bridges import Bridges

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(180)]


@dataclass
class Lab:
    """Bridges, guests and veth links made by one test (all removed at the end)."""

    net: Bridges = field(default_factory=Bridges)
    guests: list[Guest] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    async def guest(self, bridge: str, vlan: int, ip: str) -> Guest:
        g = Guest(unique("mbn"), unique("mbv"), ip)
        self.guests.append(g)
        await must("ip", "netns", "add", g.netns)
        await must(
            "ip", "link", "add", g.link, "type", "veth", "peer", "name", "eth0", "netns", g.netns
        )
        await must("ip", "link", "set", g.link, "up")
        inside = ("ip", "netns", "exec", g.netns, "ip")
        await must(*inside, "addr", "add", f"{ip}/24", "dev", "eth0")
        await must(*inside, "link", "set", "eth0", "up")
        await self.net.attach_link(bridge, g.link, vlan)
        return g

    async def wire(self) -> tuple[str, str]:
        """A veth pair, both ends up and not yet on any bridge."""
        a, b = unique("mbw"), unique("mbw")
        self.links.append(a)
        await must("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        await must("ip", "link", "set", a, "up")
        await must("ip", "link", "set", b, "up")
        return a, b


async def reaches(a: Guest, b: Guest, tries: int = 5) -> bool:
    """Whether ``a`` reaches ``b`` once the bond has settled (a new or failed-over
    bond enables its members only after OVS has seen their carrier)."""
    for _ in range(tries):
        if await a.ping(b):
            return True
    return False


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        with contextlib.suppress(Exception):
            await lab.net.destroy_all()
        for g in lab.guests:
            await run("ip", "link", "del", g.link)
            await run("ip", "netns", "del", g.netns)
        for link in lab.links:
            await run("ip", "link", "del", link)


async def test_bond_of_three_keeps_traffic_when_a_member_goes_down(lab: Lab) -> None:
    left, right = unique("mbl"), unique("mbr")
    a = await lab.guest(left, 101, "10.252.0.1")
    b = await lab.guest(right, 101, "10.252.0.2")
    wires = [await lab.wire() for _ in range(3)]
    for x, y in wires:
        await lab.net.attach_link(left, x, 101)
        await lab.net.attach_link(right, y, 101)
    # the right bridge is a plain switch with three access ports, as a bond's
    # far side usually is: active-backup needs nothing from it
    await bonds.add_bond(
        lab.net, left, {x: 101 for x, _ in wires}, 101, mode="active-backup", lacp="off"
    )
    assert await reaches(a, b)
    # take down the member carrying traffic, then another: one is enough
    for x, _ in wires[:2]:
        await must("ip", "link", "set", x, "down")
        assert await reaches(a, b), f"no traffic after {x} went down"


async def test_qinq_keeps_inner_vlans_apart_through_one_outer_vlan(lab: Lab) -> None:
    # site A and site B carry inner VLANs 10 and 20 on a trunk each; the core
    # bridge tunnels both trunks through outer VLAN 300 (dot1q-tunnel ports)
    site_a, site_b, core = unique("mba"), unique("mbb"), unique("mbc")
    a10 = await lab.guest(site_a, 10, "10.252.1.1")
    a20 = await lab.guest(site_a, 20, "10.252.1.2")
    b10 = await lab.guest(site_b, 10, "10.252.1.3")
    b20 = await lab.guest(site_b, 20, "10.252.1.4")
    for site in (site_a, site_b):
        x, y = await lab.wire()
        await lab.net.add_trunk(site, x)
        await lab.net.attach_link(core, y, 300, qinq=True)
    switch = await lab.net.switch()
    assert await switch.get("port", y, "vlan_mode") == "dot1q-tunnel"
    assert await a10.ping(b10)
    assert await a20.ping(b20)
    assert not await a10.ping(b20)
    assert not await a20.ping(b10)


async def test_bridge_capture_holds_the_ping(lab: Lab, tmp_path: Path) -> None:
    from megabus.handlers.net import capture

    br = unique("mbp")
    a = await lab.guest(br, 101, "10.252.2.1")
    b = await lab.guest(br, 101, "10.252.2.2")
    tap = await lab.net.create_host_tap(br, 0, None, "")
    await lab.net.create_mirror(br, "", tap)
    path = tmp_path / "ping.pcap"
    proc = await capture.start_pcap(tap, str(path), capture.DEFAULT_SNAPLEN, "")
    try:
        assert await a.ping(b)
    finally:
        await capture.stop(proc)
    out = await must("tcpdump", "-n", "-r", str(path))
    assert "10.252.2.1 > 10.252.2.2: ICMP echo request" in out
    assert "10.252.2.2 > 10.252.2.1: ICMP echo reply" in out
