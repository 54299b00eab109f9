"""KVM guest NICs on a real node: real QEMU, real Open vSwitch, the real dispatcher.

Diskless guests boot to "no bootable device", which is all a NIC needs: the
taps exist, QEMU holds them, QMP hot-plugs more. Bridges get test-unique
names; ``clear all`` removes everything at the end.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at, transcript
from ovsfix import ovs, unique

from megabus.bus.server import EmbeddedServer
from megabus.handlers.net._ovs import get_switch
from megabus.handlers.net.taps import link_exists

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]


@pytest.fixture
async def vmnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "vmnet", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


async def cells(node: MiniNode, col: str) -> dict[str, str]:
    out = await node.text(f".columns name,{col} vm info")
    return {k.strip(): v.strip() for k, v in (ln.split("|") for ln in out.splitlines()[1:])}


async def port(column: str, tap: str) -> str:
    switch = await get_switch()
    return await switch.get("port", tap, column)


async def test_launch_makes_tagged_taps_with_vendor_macs_and_qinq(vmnode: MiniNode) -> None:
    br = unique("mbq")
    assert await vmnode.errors(f"vm config net 101 {br},102,qinq") == []
    assert await vmnode.errors("vm launch kvm a") == []
    vm = next(iter(vmnode.state.vms.vms.values()))
    nics = vm.config.networks
    assert [n.vlan for n in nics] == [101, 102]
    for n in nics:
        assert link_exists(n.tap)
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", n.mac)
        assert int(n.mac[:2], 16) & 0x03 == 0  # unicast, globally administered
    assert await port("tag", nics[0].tap) == "101"
    assert await port("vlan_mode", nics[0].tap) == "[]"
    assert await port("tag", nics[1].tap) == "102"
    assert await port("vlan_mode", nics[1].tap) == "dot1q-tunnel"
    assert (await cells(vmnode, "qinq"))["a"] == f"[{nics[1].tap} (102)]"
    taps = (Path(vm.instance_path) / "taps").read_text()
    assert taps == f"{nics[0].tap}\n{nics[1].tap}"
    # taps survive kill and go at flush, as in 2.8
    await vmnode.run("vm kill a")
    assert link_exists(nics[0].tap)
    assert await vmnode.errors("vm start a") == []
    assert await port("tag", nics[0].tap) == "101"
    await vmnode.run("vm kill a")
    await vmnode.run("vm flush")
    assert not link_exists(nics[0].tap)
    assert not link_exists(nics[1].tap)


async def test_connect_disconnect_and_hotplug(vmnode: MiniNode) -> None:
    br2 = unique("mbc")
    await vmnode.run("vm config net LAN")
    assert await vmnode.errors("vm launch kvm k[0-1]") == []
    k0 = vmnode.state.vms.find("minimega", "k0")
    assert k0 is not None
    tap = k0.config.networks[0].tap
    assert await vmnode.errors("vm net disconnect k0 0") == []
    assert k0.config.networks[0].vlan == -1
    assert link_exists(tap)  # QEMU still holds it
    assert tap not in await (await get_switch()).list_ports("mega_bridge")
    assert await vmnode.errors(f"vm net connect all 0 LAN2 {br2}") == []
    assert await port("tag", tap) == "102"
    assert tap in await (await get_switch()).list_ports(br2)
    assert (await cells(vmnode, "bridge"))["k1"] == f"[{br2}]"
    # hot-plug a second NIC into a running guest
    await vmnode.run("vm start k0")
    assert await vmnode.errors("vm net add k0 103") == []
    assert len(k0.config.networks) == 2
    new = k0.config.networks[1].tap
    assert await port("tag", new) == "103"
    hmp = '{"execute": "human-monitor-command", "arguments": {"command-line": "info network"}}'
    out = await vmnode.text(f"vm qmp k0 '{hmp}'")
    assert f"ifname={new}" in out
    assert f"macaddr={k0.config.networks[1].mac}" in out
    await vmnode.run("vm kill all")
    await vmnode.run("vm flush")
    assert not link_exists(new)
    assert not link_exists(tap)


async def test_bond_of_three_and_clear(vmnode: MiniNode) -> None:
    await vmnode.run("vm config net 101 101 101 102")
    assert await vmnode.errors("vm launch kvm b") == []
    vm = vmnode.state.vms.find("minimega", "b")
    assert vm is not None
    taps = [n.tap for n in vm.config.networks]
    assert await vmnode.errors("vm net bond b 0,1,3 balance-slb off name bb0 qinq") == []
    switch = await get_switch()
    ports = await switch.list_ports("mega_bridge")
    assert "bb0" in ports
    assert not set(taps[:2]) & set(ports)
    assert await port("tag", "bb0") == "101"  # the first member's VLAN
    assert await port("vlan_mode", "bb0") == "dot1q-tunnel"
    assert await port("bond_mode", "bb0") == "balance-slb"
    bridge_table = vmnode.state.bridges.lookup("mega_bridge")
    assert bridge_table is not None
    assert set(bridge_table.bonds["bb0"]) == {taps[0], taps[1], taps[3]}
    assert "bb0" in (Path(vm.instance_path) / "bonds").read_text()
    assert await vmnode.errors("clear vm net bond b bb0") == []
    ports = await switch.list_ports("mega_bridge")
    assert "bb0" not in ports
    assert await port("tag", taps[3]) == "102"  # back as it was
    assert vm.config.bonds == []


async def test_bond_config_at_launch(vmnode: MiniNode) -> None:
    await vmnode.run("vm config net 101 101 101")
    assert await vmnode.errors("vm config bonds 0,1,2,active-backup,off") == []
    assert await vmnode.errors("vm launch kvm c") == []
    vm = vmnode.state.vms.find("minimega", "c")
    assert vm is not None
    name = vm.config.bonds[0].name
    assert name.startswith("mega_bond")
    assert name in await (await get_switch()).list_ports("mega_bridge")
    await vmnode.run("vm kill c")
    await vmnode.run("vm flush")
    assert name not in await (await get_switch()).list_ports("mega_bridge")


async def test_bad_input_gets_clear_errors(vmnode: MiniNode) -> None:
    other = unique("mbo")
    await vmnode.run(f"vm config net 101 {other},101")
    assert await vmnode.errors("vm launch kvm d") == []
    errors = {
        "vm net bond d 0,1 active-backup active": (
            "interfaces being bonded are not on the same bridge"
        ),
        "vm net bond d 0,5 active-backup active": "interface 5 not found for vm d",
        "vm net bond d 0,1 balance-tcp off": (
            "LACP mode must be set to active or passive for balance-tcp bond mode"
        ),
        "vm net connect d 7 101": "no network 7, VM only has 2 networks",
        "vm net add d 1,2,3,4,5,6": "malformed netspec",
        "vm net connect d 0 101 a_bridge_name_too_long": (
            "bridge name is longer than 15 characters: `a_bridge_name_too_long`"
        ),
        "tap mirror d 3 d 0": "no such interface 3 for d",
        "clear vm net bond d nope": "bond nope doesn't exist on VM d",
        "tap create 101 name tap_name_over_15": (
            "tap name is longer than 15 characters: `tap_name_over_15`"
        ),
        "vm net connect d 0 4096": "invalid VLAN (0 <= vlan < 4096)",
    }
    for line, want in errors.items():
        assert await vmnode.errors(line) == [want], line
    # the node keeps serving
    assert await vmnode.errors("vm net disconnect d 1") == []


async def test_compat_tap_mirror_and_capture(vmnode: MiniNode, compat_dir: Path) -> None:
    for name in ("tap_mirror_vm", "capture"):
        script = (compat_dir / name).read_text().rstrip("\n")
        want = (compat_dir / f"{name}.want").read_text()
        assert await transcript(vmnode, script) == want
        await vmnode.run("clear all")
