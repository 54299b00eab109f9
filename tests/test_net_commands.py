"""The ``tap`` and ``bridge`` commands as a user types them, on a real Open vSwitch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, transcript
from ovsfix import ovs, unique
from pyroute2 import IPRoute

from megabus.handlers.net._bridges import Bridges
from megabus.handlers.net._ovs import Switch, get_switch
from megabus.handlers.net.taps import link_exists

__all__ = ["ovs"]

pytestmark = pytest.mark.usefixtures("ovs")


@pytest.fixture
async def net(node: MiniNode, tmp_path: Path) -> AsyncIterator[Bridges]:
    """The node's bridge table, its files in ``tmp_path``; ``clear all`` at the end."""
    table = node.state.bridges
    table.base = tmp_path
    try:
        yield table
    finally:
        await node.run("clear all")


@pytest.fixture
async def switch() -> Switch:
    return await get_switch()


def _link(name: str) -> tuple[int, list[str]]:
    """(flags, addresses) of a link."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        flags = ipr.get_links(index)[0]["flags"]
        addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)]
    return flags, addrs


def _mac(name: str) -> str:
    with IPRoute() as ipr:
        return str(ipr.get_links(ipr.link_lookup(ifname=name)[0])[0].get_attr("IFLA_ADDRESS"))


async def test_host_tap_lifecycle_as_2_8(
    node: MiniNode, net: Bridges, switch: Switch, tmp_path: Path
) -> None:
    br, t0, t1 = unique("mbb"), unique("mbt"), unique("mbt")
    script = f"""tap create 10 bridge {br} name {t0}
.filter bridge={br} tap
tap create 10 bridge {br} name {t0}
tap create 10 bridge {br} ip 10.250.0.1/24 {t1}
.filter bridge={br} tap"""
    want = f"""## tap create 10 bridge {br} name {t0}
{t0}
## .filter bridge={br} tap
bridge{" " * (len(br) - 6)} | tap{" " * (len(t0) - 3)} | vlan
{br} | {t0} | 10
## tap create 10 bridge {br} name {t0}
E: tap already on bridge
## tap create 10 bridge {br} ip 10.250.0.1/24 {t1}
{t1}
## .filter bridge={br} tap
bridge{" " * (len(br) - 6)} | tap{" " * (len(t0) - 3)} | vlan
{br} | {t0} | 10
{br} | {t1} | 10
"""
    assert await transcript(node, script) == want
    # the taps are real: OVS ports tagged 10, up, promiscuous, t1 with its address
    assert await switch.list_ports(br) == sorted([t0, t1])
    assert await switch.get("port", t1, "tag") == "10"
    flags, addrs = await asyncio.to_thread(_link, t1)
    assert flags & 0x1
    assert flags & 0x100
    assert "10.250.0.1" in addrs
    assert br in (tmp_path / "bridges").read_text()
    assert t1 in (tmp_path / "taps").read_text()

    assert await node.errors("tap delete all") == []
    assert await node.text("tap") == ""
    assert await switch.list_ports(br) == []
    assert not link_exists(t0)
    assert not link_exists(t1)


async def test_host_taps_belong_to_their_namespace(node: MiniNode, net: Bridges) -> None:
    br, tap = unique("mbb"), unique("mbt")
    assert await node.text(f"namespace foo tap create 20 bridge {br} name {tap}") == tap
    assert await node.text("tap") == ""
    assert tap in await node.text("namespace foo tap")
    assert await node.errors(f"tap delete {tap}") == ["not a host tap in active namespace"]
    assert await node.errors("tap delete mb-nosuchtap") == ["unknown tap"]
    assert await node.errors(f"namespace foo tap delete {tap}") == []
    assert not link_exists(tap)


async def test_bad_tap_names_and_vlans_are_refused(node: MiniNode, net: Bridges) -> None:
    br = unique("mbb")
    assert await node.errors("tap create 10 bridge all") == [
        "`all` is a reserved word -- cannot use for bridge name"
    ]
    assert await node.errors(f"tap create 10 bridge {br} name all") == [
        "`all` is a reserved word -- cannot use for tap name"
    ]
    assert await node.errors(f"tap create 10 bridge {br} name mb_this_is_too_long") == [
        "tap name is longer than 15 characters: `mb_this_is_too_long`"
    ]
    assert await node.errors(f"tap create 5000 bridge {br}") == ["invalid VLAN (0 <= vlan < 4096)"]
    assert await node.errors(f"tap create 10 bridge {br} name lo") == [
        "tap name already in use by a network interface: lo"
    ]
    # a bad address takes the new tap away again
    tap = unique("mbt")
    errors = await node.errors(f"tap create 10 bridge {br} ip 10.250.0.300 {tap}")
    assert errors == ['ip error: invalid address "10.250.0.300"']
    assert not link_exists(tap)
    assert await node.text(f".filter bridge={br} tap") == ""


async def test_generated_names_and_vlan_aliases(node: MiniNode, net: Bridges) -> None:
    br = unique("mbb")
    name = await node.text(f"tap create DMZ bridge {br}")
    assert name.startswith("mega_tap")
    assert link_exists(name)
    assert await node.text(f".columns vlan .filter bridge={br} tap") == "vlan\nDMZ (101)"


async def test_bridge_trunk_config_and_listing(
    node: MiniNode, net: Bridges, switch: Switch
) -> None:
    br = unique("mbb")
    await node.run(f"tap create 7 bridge {br}")
    assert await node.errors(f"bridge trunk {br} mbtrunk0") == []
    assert await node.errors(f"bridge trunk {br} mbtrunk0") == [
        "bridge already trunking to mbtrunk0"
    ]
    assert await node.errors(f"bridge config {br} stp_enable") == ["expected key=value"]
    assert await node.errors(f"bridge config {br} stp_enable=true") == []
    assert await switch.get("bridge", br, "stp_enable") == "true"
    cols = "bridge,preexisting,vlans,trunks,config"
    line = await node.text(f".columns {cols} .filter bridge={br} bridge")
    cells = [c.strip() for c in line.split("\n")[1].split("|")]
    assert cells == [br, "false", "[7]", "[mbtrunk0]", '{"stp_enable":"true"}']
    assert await node.errors(f"bridge notrunk {br} mbtrunk1") == ["unknown trunk: mbtrunk1"]
    assert await node.errors(f"bridge notrunk {br} mbtrunk0") == []
    assert "mbtrunk0" not in await switch.list_ports(br)


async def test_tunnels_are_ports_of_the_bridge(
    node: MiniNode, net: Bridges, switch: Switch
) -> None:
    br = unique("mbb")
    assert await node.errors(f"bridge tunnel vxlan {br} 10.251.0.2 42") == []
    [tunnel] = net.lookup(br).tunnels  # type: ignore[union-attr]
    assert await switch.get("interface", tunnel, "type") == "vxlan"
    assert await switch.get("interface", tunnel, "options:key") == '"42"'
    assert tunnel in await node.text(f".columns tunnels .filter bridge={br} bridge")
    assert await node.errors(f"bridge notunnel {br} {tunnel}") == []
    assert await node.errors(f"bridge notunnel {br} {tunnel}") == [f"unknown tunnel: {tunnel}"]


async def test_bridge_destroy_and_clear_all(node: MiniNode, net: Bridges, switch: Switch) -> None:
    mine, theirs = unique("mbb"), unique("mbx")
    assert await switch.add_bridge(theirs)
    try:
        tap = await node.text(f"tap create 30 bridge {mine}")
        other = await node.text(f"tap create 30 bridge {theirs}")
        assert "true" in await node.text(f".columns preexisting .filter bridge={theirs} bridge")
        assert await node.errors("bridge destroy mb-nosuchbr") == ["bridge not found: mb-nosuchbr"]
        await node.run("clear all")
        assert await node.text("tap") == ""
        assert not link_exists(tap)
        assert not link_exists(other)
        assert not link_exists(mine)
        # a bridge that was there before the node stays, emptied of the node's ports
        assert await switch.list_ports(theirs) == []
        assert theirs not in await node.text(".columns bridge bridge")
    finally:
        await switch.del_bridge(theirs)


async def test_mirrors_by_destination(node: MiniNode, net: Bridges, switch: Switch) -> None:
    br, src, dst = unique("mbb"), unique("mbs"), unique("mbd")
    await node.run(f"tap create 40 bridge {br} name {src}")
    await node.run(f"tap create 40 bridge {br} name {dst}")
    assert await node.errors(f"tap mirror {src} {src} {br}") == ["cannot mirror tap to itself"]
    assert await node.errors(f"tap mirror mb-nosuch {dst} {br}") == ["source tap is not on bridge"]
    assert await node.errors(f"tap mirror {src} {dst} {br}") == []
    assert await node.errors(f"tap mirror {src} {dst} {br}") == [
        "destination tap is already a mirror"
    ]
    assert (await switch.get("mirror", f"mirror-{dst}", "name")).strip('"') == f"mirror-{dst}"
    assert await node.errors("clear tap mirror mb-nosuch") == ["not a valid mirror"]
    assert await node.errors(f"clear tap mirror {dst}") == []
    assert await switch.get("bridge", br, "mirrors") == "[]"
    await node.run(f"tap mirror {src} {dst} {br}")
    assert await node.errors("clear tap") == []
    assert await switch.get("bridge", br, "mirrors") == "[]"
    assert await node.text("tap") == ""


async def test_vm_tap_api_with_qinq(net: Bridges, switch: Switch) -> None:
    br = unique("mbb")
    plain = await net.create_tap(br, 101, mac="00:11:22:aa:bb:cc")
    outer = await net.create_tap(br, 102, qinq=True)
    assert await switch.get("port", plain, "tag") == "101"
    assert await switch.get("port", outer, "vlan_mode") == "dot1q-tunnel"
    assert await switch.get("port", outer, "tag") == "102"
    assert await asyncio.to_thread(_mac, plain) == "00:11:22:aa:bb:cc"
    assert net.lookup(br).vlans() == [101, 102]  # type: ignore[union-attr]
    await net.destroy_taps([plain, outer])
    assert not link_exists(plain)
    assert not link_exists(outer)
    assert await switch.list_ports(br) == []


async def test_clearing_a_namespace_deletes_its_host_taps(node: MiniNode, net: Bridges) -> None:
    br, mine, other = unique("mbb"), unique("mbt"), unique("mbt")
    assert await node.errors(f"namespace foo tap create 5 bridge {br} name {mine}") == []
    assert await node.errors(f"namespace bar tap create 5 bridge {br} name {other}") == []
    assert await node.errors("clear namespace foo") == []
    assert not link_exists(mine)
    assert link_exists(other)
    assert await node.errors("clear namespace bar") == []
    assert not link_exists(other)
