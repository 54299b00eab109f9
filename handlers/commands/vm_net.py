"""The ``vm net`` family, ``clear vm net bond``, and the VM forms of ``tap mirror``.

``vm net add`` hot-plugs NICs into KVM guests (a tap, then HMP ``netdev_add``
and ``device_add``); ``connect``/``disconnect`` move a NIC between bridges and
VLANs or take it off its bridge; ``bond`` makes an OVS bond of several NICs.
The tap work happens in :mod:`megabus.handlers.net` (importing
:mod:`.net.vmnics` installs the KVM tap hooks). Containers' NICs are veths
that the container runtime puts on the bridge with ``attach_link``; connect
and disconnect move them the same way, since the bridge table treats them
as taps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.commands.tap import delete_mirrors
from megabus.handlers.commands.vm import table
from megabus.handlers.model.bondspec import BondConfig
from megabus.handlers.model.netspec import resolve_netspecs
from megabus.handlers.model.qemu_info import nics as qemu_nics
from megabus.handlers.model.table import WILDCARD, go_atoi, vm_not_found
from megabus.handlers.model.vm import VM, VMType
from megabus.handlers.net import DEFAULT_BRIDGE, vmnics
from megabus.handlers.net import bonds as bondops
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_NET_LONG = """Add, disconnect, or move existing network connections for one or more VMs. See "vm
start" for a full description of allowable targets.

To add a network connection, you can specify the same options as you do when you add
connections via vm config when launching VMs. See "vm config net" for more details.

Network connections are indicated by their position in vm net (same order in vm
info) and are zero indexed. For example, to disconnect the first network
connection from a VM named vm-0:

\tvm net disconnect vm-0 0

To move a connection, specify the interface number, the new VLAN tag and
optional bridge:

\tvm net connect vm-0 0 100 mega_bridge

If the bridge name is omitted, the interface will be reconnected to the same
bridge that it is already on. If the interface is not connected to a bridge, it
will be connected to the default bridge, "mega_bridge".

To create a bond comprised of two or more interfaces on a VM, use 'vm net bond'.
For example, to create an 'active-backup' bond with interfaces 1 and 2 on VM foo
with LACP set to active:

\tvm net bond foo 1,2 active-backup active

There are three bond modes supported: active-backup, balance-slb, and
balance-tcp, and three LACP modes supported: active, passive, and off. To
disable the bond if LACP negotiation fails instead of falling back to
active-backup mode, provide the 'no-lacp-fallback' option. With "qinq" (or when
any bonded interface is QinQ) the bond is a dot1q-tunnel port whose outer tag is
the VLAN of the first interface."""


def _position(text: str) -> int:
    pos = go_atoi(text)
    if pos is None:
        raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return pos


def _no_network(vm: VM, pos: int) -> CommandError:
    return CommandError(f"no network {pos}, VM only has {len(vm.config.networks)} networks")


async def _save_config(vm: VM) -> None:
    # 2.8 rewrites <inst>/config after every change; a failure is only logged
    def write() -> None:
        try:
            with open(f"{vm.instance_path}/config", "w") as f:
                f.write("".join(line + "\n" for line in vm.config.write_config()))
        except OSError as err:
            logger.warning("unable to update vm config for %d: %s", vm.id, err)

    await asyncio.to_thread(write)


@command(
    "vm net <add,> <vm target> [netspec]...",
    "vm net <connect,> <vm target> <tap position> <vlan> [bridge]",
    "vm net <disconnect,> <vm target> <tap position>",
    "vm net <bond,> <vm target> <interface indexes> <active-backup,balance-slb,balance-tcp> "
    "<active,passive,off> [qinq,]",
    "vm net <bond,> <vm target> <interface indexes> <active-backup,balance-slb,balance-tcp> "
    "<active,passive,off> name <name> [qinq,]",
    "vm net <bond,> <vm target> <interface indexes> <active-backup,balance-slb,balance-tcp> "
    "<active,passive> <no-lacp-fallback,> [qinq,]",
    "vm net <bond,> <vm target> <interface indexes> <active-backup,balance-slb,balance-tcp> "
    "<active,passive> <no-lacp-fallback,> name <name> [qinq,]",
    short="add, disconnect, or move network connections",
    long=_NET_LONG,
    kind="vmtarget",
)
async def vm_net(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliVMNetMod``."""
    target = cmd.arg("vm")
    t = table(ctx)
    net = ctx.state.bridges
    if cmd.flag("add"):
        specs = cmd.items("netspec")

        async def add(vm: VM, wild: bool) -> bool:
            await _hotplug(ctx, vm, specs)
            await _save_config(vm)
            return True

        await t.apply(ctx.namespace, target, add)
    elif cmd.flag("connect"):
        pos = _position(cmd.arg("tap"))
        vlan = await ctx.state.vlans.lookup(ctx.namespace, cmd.arg("vlan"))
        bridge = cmd.arg("bridge")

        async def connect(vm: VM, wild: bool) -> bool:
            nets = vm.config.networks
            if pos < 0 or pos >= len(nets):
                raise _no_network(vm, pos)
            nic = nets[pos]
            dst = bridge or nic.bridge or DEFAULT_BRIDGE
            logger.info(
                "moving network connection: %d %d %s:%d -> %s:%d",
                vm.id, pos, nic.bridge, nic.vlan, dst, vlan,
            )  # fmt: skip
            if nic.tap and net.any_tap(nic.tap) is not None:
                await net.connect_tap(nic.tap, dst, vlan, qinq=nic.qinq)
            else:
                await net.get(dst)  # a container that is not running: its config only
            nic.alias = ctx.state.vlans.alias_of(vm.namespace, vlan) or ""
            nic.vlan = vlan
            nic.bridge = dst
            await _save_config(vm)
            return True

        await t.apply(ctx.namespace, target, connect)
    elif cmd.flag("disconnect"):
        pos = _position(cmd.arg("tap"))

        async def disconnect(vm: VM, wild: bool) -> bool:
            nets = vm.config.networks
            if pos < 0 or pos >= len(nets):
                raise _no_network(vm, pos)
            nic = nets[pos]
            if nic.vlan == vmnics.DISCONNECTED_VLAN:
                return True
            if nic.tap and net.any_tap(nic.tap) is not None:
                await net.disconnect_tap(nic.tap)
            nic.alias = ""
            nic.bridge = ""
            nic.vlan = vmnics.DISCONNECTED_VLAN
            await _save_config(vm)
            return True

        await t.apply(ctx.namespace, target, disconnect)
    else:
        await _bond(ctx, cmd)
    return None


async def _hotplug(ctx: Context, vm: VM, specs: list[str]) -> None:
    """2.8's ``AddNIC`` for each spec: tap, ``netdev_add``, ``device_add``."""
    if vm.type is not VMType.KVM:
        raise CommandError("unable to get Kvm")

    async def lookup(text: str) -> int:
        return await ctx.state.vlans.lookup(ctx.namespace, text)

    drivers = await qemu_nics(vm.config.qemu, vm.config.machine)
    added = await resolve_netspecs(specs, drivers, lookup)
    runtime = vm.runtime
    net = ctx.state.bridges
    for nic in added:
        await vmnics.create_taps(net, [nic])
        try:
            out = await runtime.hmp(
                f"netdev_add type=tap,id={nic.tap},ifname={nic.tap},script=no,downscript=no"
            )
            if out.strip():
                raise CommandError(out.strip())
            out = await runtime.hmp(
                f"device_add id={nic.tap},netdev={nic.tap},bus=pci.0,"
                f"driver={nic.driver},mac={nic.mac}"
            )
            if out.strip():
                raise CommandError(out.strip())
        except CommandError:
            await net.destroy_taps([nic.tap])
            raise
        vm.config.networks.append(nic)
        # the runtime destroys taps at flush only if it knows it has some
        runtime.taps.append(nic.tap)
        await asyncio.to_thread(vmnics.write_taps, vm)


async def _bond(ctx: Context, cmd: Command) -> None:
    ifaces: list[int] = []
    for text in cmd.arg("interface").split(","):
        idx = go_atoi(text)
        if idx is None:
            raise CommandError(f"invalid interface index: {text}")
        ifaces.append(idx)
    mode = next(m for m in ("active-backup", "balance-slb", "balance-tcp") if cmd.flag(m))
    lacp = next(m for m in ("active", "passive", "off") if cmd.flag(m))
    bondops.check_modes(mode, lacp)
    net = ctx.state.bridges

    async def bond(vm: VM, wild: bool) -> bool:
        cfg = BondConfig(
            name=cmd.arg("name"),
            mode=mode,
            lacp=lacp,
            fallback=not cmd.flag("no-lacp-fallback"),
            qinq=cmd.flag("qinq"),
            interfaces=list(ifaces),
        )
        await vmnics.make_bond(net, vm, cfg)
        vm.config.bonds.append(cfg)
        await asyncio.to_thread(vmnics.write_bonds, vm)
        await _save_config(vm)
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), bond)


@command(
    "clear vm net bond <vm target> [name]",
    short="remove bonds from VMs",
    long="""Remove one bond (by name) or every bond of the targeted VMs. The bonded
interfaces go back on their bridge with the VLAN (and QinQ) they had before.""",
    kind="vmtarget",
)
async def clear_vm_net_bond(ctx: Context, cmd: Command) -> Result:
    """2.8's ``ClearBond`` on each target, or on every bond of it."""
    name = cmd.arg("name")
    net = ctx.state.bridges

    async def clear(vm: VM, wild: bool) -> bool:
        doomed = [b for b in vm.config.bonds if not name or b.name == name]
        if name and not doomed:
            raise CommandError(f"bond {name} doesn't exist on VM {vm.name}")
        for b in doomed:
            if bondops.find_bond(net, b.name) is not None:
                await bondops.delete_bond(net, b.name)
            vm.config.bonds.remove(b)
        await asyncio.to_thread(vmnics.write_bonds, vm)
        await _save_config(vm)
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), clear)
    return None


# -- tap mirror, VM forms ----------------------------------------------------------------


def _vm_nic_tap(ctx: Context, name: str, index: str) -> tuple[str, str]:
    """(bridge, tap) of NIC ``index`` of VM ``name`` (2.8's ``getNetwork`` errors)."""
    i = go_atoi(index)
    if i is None:
        raise CommandError(f"invalid interface number: `{index}`")
    vm = table(ctx).find(ctx.namespace, name)
    if vm is None:
        raise vm_not_found(name)
    nic = vmnics.nic(vm, i)
    return nic.bridge, nic.tap


@command(
    "tap <mirror,> <vm name> <interface index> <vm2 name> <interface2 index>",
    short="mirror one VM interface to another",
    long="""Mirror the traffic of a VM's interface to another VM's interface. Both
interfaces must be on the same bridge and the VMs on this node. The mirror is
named by its destination ("clear tap mirror <vm2> <index>").""",
    kind="vmtarget",
)
async def tap_mirror_vm(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliTapMirrorVM``."""
    first = second = None
    err1: CommandError | None = None
    err2: CommandError | None = None
    try:
        first = _vm_nic_tap(ctx, cmd.arg("vm"), cmd.arg("interface"))
    except CommandError as err:
        err1 = err
    try:
        second = _vm_nic_tap(ctx, cmd.arg("vm2"), cmd.arg("interface2"))
    except CommandError as err:
        err2 = err
    if err1 is not None:
        if err2 is None and str(err1).startswith("vm not found: "):
            raise CommandError(f"vms are not colocated or invalid vm name: {cmd.arg('vm')}")
        raise err1
    if err2 is not None:
        if str(err2).startswith("vm not found: "):
            raise CommandError(f"vms are not colocated or invalid vm name: {cmd.arg('vm2')}")
        raise err2
    assert first is not None
    assert second is not None
    if first[0] != second[0]:
        raise CommandError(f"interfaces on different bridges: {first[0]} and {second[0]}")
    net = ctx.state.bridges
    await net.create_mirror(first[0], first[1], second[1], ctx.namespace)
    return None


@command(
    "clear tap <mirror,> <vm name> <interface index or all>",
    short="remove the mirrors into a VM's interfaces",
    kind="vmtarget",
)
async def clear_tap_mirror_vm(ctx: Context, cmd: Command) -> Result:
    """2.8's ``mirrorDeleteVM``: the mirror into one NIC of a VM, or into all of them."""
    name = cmd.arg("vm")
    vm = table(ctx).find(ctx.namespace, name)
    if vm is None:
        raise vm_not_found(name)
    which = cmd.arg("interface")
    net = ctx.state.bridges
    if which == WILDCARD:
        mine = {dst for _, dst in net.mirrors(ctx.namespace)}
        for nic in vm.config.networks:
            if nic.tap in mine:
                await delete_mirrors(ctx, nic.tap)
        return None
    i = go_atoi(which)
    if i is None:
        raise CommandError(f"invalid interface number: `{which}`")
    await delete_mirrors(ctx, vmnics.nic(vm, i).tap)
    return None
