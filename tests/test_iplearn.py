"""IP learning on a real bridge: OpenFlow copies ARP/NS to LOCAL, a packet socket reads them.

A diskless KVM guest never speaks on its NIC, so the frames come from a
network namespace on the same bridge (another VLAN: the snooper, like 2.8's,
goes by MAC and bridge) whose link carries the VM NIC's MAC: its ARP and
IPv6 neighbour solicitations are what the VM would send. ``vm info`` must
then show the addresses in ``ip`` and ``ip6``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dnslab import Lab
from nodes import MiniNode, node_at
from ovsfix import ovs, unique
from procs import must, run

from megabus.bus.server import EmbeddedServer
from megabus.handlers.net import _iplearn as iplearn
from megabus.handlers.net._ovs import get_switch

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]


@pytest.fixture
async def lnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "ipl", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.state.iplearn.stop()
            await n.run("clear all")


async def our_flows(bridge: str) -> list[str]:
    switch = await get_switch()
    target = f"unix:{switch.rundir}/{bridge}.mgmt" if switch.rundir else bridge
    out = await must("ovs-ofctl", "dump-flows", target, f"cookie={iplearn.COOKIE}/-1")
    return [ln for ln in out.splitlines() if "actions=" in ln]


async def cells(node: MiniNode) -> list[str]:
    out = await node.text(".columns name,ip,ip6 vm info")
    return [c.strip() for c in out.splitlines()[1].split("|")]


async def test_arp_and_ns_fill_vm_info_ip_and_ip6(lnode: MiniNode) -> None:
    br = unique("mib")
    assert await lnode.errors(f"vm config net {br},101") == []
    assert await lnode.errors("vm launch kvm a") == []
    vm = next(iter(lnode.state.vms.vms.values()))
    mac = vm.config.networks[0].mac
    assert await cells(lnode) == ["a", "[]", "[]"]

    learner = lnode.state.iplearn
    await learner.start()
    flows = await our_flows(br)
    assert len(flows) == 2
    assert any("arp" in f and "actions=LOCAL,NORMAL" in f for f in flows)
    assert any("icmp_type=135" in f and "actions=LOCAL,NORMAL" in f for f in flows)

    lab = Lab(lnode.state.bridges, br)
    try:
        guest = await lab.guest(102, "10.231.3.5", mac=mac)
        await must(*guest.ns("ip", "-6", "addr", "add", "fd00:231::5/64", "dev", "eth0", "nodad"))
        async with asyncio.timeout(60):
            while vm.config.networks[0].ip4 == "" or vm.config.networks[0].ip6 == "":
                # nobody answers: each ping makes the guest ask again (ARP / NS)
                await run(*guest.ns("ping", "-c", "1", "-W", "1", "10.231.3.99"))
                await run(*guest.ns("ping", "-6", "-c", "1", "-W", "1", "fd00:231::99"))
        assert await cells(lnode) == ["a", "[10.231.3.5]", "[fd00:231::5]"]
    finally:
        await lab.close()

    # stopping takes our flows off the bridge (which stays)
    await learner.stop()
    assert await our_flows(br) == []
    assert learner.snoopers == {}


def arp(sender_mac: bytes, sender_ip: bytes, vlan: int | None = None) -> bytes:
    eth = b"\xff" * 6 + sender_mac
    eth += struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sender_mac + sender_ip
    return eth + struct.pack("!H", 0x0806) + body + b"\0" * 6 + bytes([10, 0, 0, 1])


def ns6(src_mac: bytes, src_ip: str, icmp_type: int = 135) -> bytes:
    eth = b"\x33\x33\xff\0\0\x01" + src_mac + struct.pack("!H", 0x86DD)
    ip6 = struct.pack("!IHBB", 0x60000000, 24, 58, 255) + ipaddress.IPv6Address(src_ip).packed
    ip6 += ipaddress.IPv6Address("ff02::1:ff00:1").packed
    return eth + ip6 + bytes([icmp_type, 0, 0, 0]) + b"\0" * 20


def test_parse_takes_what_2_8_takes() -> None:
    mac = bytes.fromhex("00163e010203")
    assert iplearn.parse(arp(mac, bytes([10, 1, 2, 3]))) == ("00:16:3e:01:02:03", "10.1.2.3")
    assert iplearn.parse(arp(mac, bytes([10, 1, 2, 3]), vlan=101)) == (
        "00:16:3e:01:02:03",
        "10.1.2.3",
    )
    assert iplearn.parse(arp(mac, bytes([0, 0, 0, 0]))) is None  # an ARP probe
    assert iplearn.parse(arp(mac, bytes([169, 254, 0, 9]))) is None  # link-local
    assert iplearn.parse(ns6(mac, "fd00::7")) == ("00:16:3e:01:02:03", "fd00::7")
    assert iplearn.parse(ns6(mac, "fd00::7", 136)) == ("00:16:3e:01:02:03", "fd00::7")
    assert iplearn.parse(ns6(mac, "fd00::7", 128)) is None  # an echo request
    assert iplearn.parse(ns6(mac, "fe80::1")) is None
    assert iplearn.parse(ns6(mac, "::")) is None  # duplicate address detection
    assert iplearn.parse(b"\0" * 10) is None
