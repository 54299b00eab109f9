"""KVM guest NICs: the taps the KVM runtime makes at launch and removes at flush.

At launch every NIC of the VM's config gets a MAC (a random one under a
registered vendor's OUI, as 2.8 picks them, unless the netspec gave one)
and a ``mega_tapN`` tap on its bridge in its VLAN, QinQ where the netspec
says so; all taps of a VM are made in one netlink batch and one OVS
transaction. Then the bonds of ``vm config bonds`` are made, and the
instance files ``taps`` and ``bonds`` written. A relaunched VM (``vm start``
after ``vm kill``) keeps its taps, as 2.8 does: they live until flush.

The KVM runtime calls :func:`create_vm_taps` and :func:`destroy_vm_taps`
with its node's bridge table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import VM
from megabus.handlers.net import bonds as bondops
from megabus.handlers.net._bridges import Bridges, TapSpec

if TYPE_CHECKING:
    from megabus.handlers.model.bondspec import BondConfig
    from megabus.handlers.model.netspec import NetConfig

logger = logging.getLogger(__name__)

#: 2.8's VLAN of a NIC taken off its bridge (``vm net disconnect``).
DISCONNECTED_VLAN = -1

#: Registered (IEEE) vendor OUIs. 2.8 draws from gopacket's whole vendor
#: table; any registered, unicast, globally administered OUI gives the same
#: kind of address, which guests and tools treat as real hardware.
OUIS = (
    (0x00, 0x13, 0x3A), (0x00, 0x26, 0xB6), (0x00, 0x1B, 0x21), (0x00, 0x0C, 0x29),
    (0x00, 0x50, 0x56), (0x00, 0x1C, 0x42), (0x00, 0x15, 0x5D), (0x00, 0x16, 0x3E),
    (0x00, 0x25, 0x90), (0x00, 0x1E, 0x67), (0x3C, 0xFD, 0xFE), (0xA0, 0x36, 0x9F),
    (0xF8, 0xBC, 0x12), (0x90, 0xE2, 0xBA), (0x00, 0x0A, 0xF7), (0xB8, 0x27, 0xEB),
)  # fmt: skip

_rng = random.SystemRandom()


def random_mac() -> str:
    """A random MAC under a vendor OUI, lower case (2.8's ``randomMac``)."""
    prefix = _rng.choice(OUIS)
    tail = [_rng.randrange(256) for _ in range(3)]
    return ":".join(f"{b:02x}" for b in (*prefix, *tail))


def write_taps(vm: VM) -> None:
    """``<inst>/taps``: one tap per line, no trailing newline (2.8's ``writeTaps``)."""
    _write(vm, "taps", [n.tap for n in vm.config.networks])


def write_bonds(vm: VM) -> None:
    """``<inst>/bonds``: one bond name per line (2.8's ``writeBonds``)."""
    _write(vm, "bonds", [b.name for b in vm.config.bonds])


def _write(vm: VM, name: str, lines: list[str]) -> None:
    try:
        with open(os.path.join(vm.instance_path, name), "w") as f:
            f.write("\n".join(lines))
    except OSError as err:
        logger.warning("vm %d: cannot write %s: %s", vm.id, name, err)


def nic(vm: VM, index: int) -> NetConfig:
    """NIC ``index`` of ``vm`` or 2.8's ``no such interface <i> for <vm>``."""
    nets = vm.config.networks
    if index < 0 or index >= len(nets):
        raise CommandError(f"no such interface {index} for {vm.name}")
    return nets[index]


async def create_taps(net: Bridges, nics: list[NetConfig]) -> list[str]:
    """Give ``nics`` MACs and taps (one batch); sets ``nic.tap`` and returns the names."""
    for n in nics:
        if not n.mac:
            n.mac = random_mac()
    specs = [TapSpec(n.bridge, n.vlan, None, n.qinq, n.mac) for n in nics]
    names = await net.create_taps(specs)
    for n, name in zip(nics, names, strict=True):
        n.tap = name
    return names


async def make_bond(net: Bridges, vm: VM, bond: BondConfig) -> None:
    """Create one bond of ``vm`` (2.8's ``addBond``): members on one bridge, first VLAN."""
    bond.bridge = ""
    bond.vlan = -1
    members: dict[str, int] = {}
    for idx in bond.interfaces:
        nets = vm.config.networks
        if idx < 0 or idx >= len(nets):
            raise CommandError(f"interface {idx} not found for vm {vm.name}")
        cfg = nets[idx]
        if not bond.bridge:
            bond.bridge = cfg.bridge
        elif cfg.bridge != bond.bridge:
            raise CommandError("interfaces being bonded are not on the same bridge")
        if bond.vlan < 0:
            bond.vlan = cfg.vlan
        elif cfg.vlan != bond.vlan:
            logger.warning(
                "interface %d on vm %s is not on VLAN %d -- still defaulting to %d for bond",
                idx, vm.name, bond.vlan, bond.vlan,
            )  # fmt: skip
        bond.qinq = bond.qinq or cfg.qinq
        members[cfg.tap] = cfg.vlan
    if bond.vlan == DISCONNECTED_VLAN:
        raise CommandError("cannot bond disconnected interfaces")
    bond.name = await bondops.add_bond(
        net, bond.bridge, members, bond.vlan, name=bond.name, mode=bond.mode,
        lacp=bond.lacp, fallback=bond.fallback, qinq=bond.qinq,
    )  # fmt: skip


async def create_vm_taps(net: Bridges, vm: VM) -> list[str]:
    """Create ``vm``'s taps (one per NIC, in order) and bonds; return the tap names."""
    nics = vm.config.networks
    if nics and all(n.tap and net.any_tap(n.tap) is not None for n in nics):
        return [n.tap for n in nics]  # relaunch: the taps outlived the kill
    names = await create_taps(net, nics)
    await asyncio.to_thread(write_taps, vm)
    try:
        for bond in vm.config.bonds:
            await make_bond(net, vm, bond)
    except CommandError:
        await destroy_vm_taps(net, vm)
        raise
    await asyncio.to_thread(write_bonds, vm)
    return names


async def destroy_vm_taps(net: Bridges, vm: VM) -> None:
    """Remove ``vm``'s bonds and taps (at flush: 2.8 keeps KVM taps across kill)."""
    for bond in vm.config.bonds:
        if bond.name and bondops.find_bond(net, bond.name) is not None:
            await bondops.delete_bond(net, bond.name, restore=False)
    await net.destroy_taps([n.tap for n in vm.config.networks if n.tap])
