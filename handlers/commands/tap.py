"""The ``tap`` family: host taps (create in every form, list, delete), mirrors, ``clear tap``.

Host taps belong to the namespace that made them, as in 2.8: only it lists
and deletes them, yet names are unique across namespaces. The work happens
in the node's bridge table (:mod:`megabus.handlers.net.bridges`); this module
speaks 2.8's language and texts over it. The VM forms of ``tap mirror`` need
the VM table and live with the VM family.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.net import taps as links
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

WILDCARD = "all"

_TAP_LONG = """Control host taps on a named vlan for communicating between a host and any VMs
on that vlan.

Calling tap with no arguments will list all created taps.

To create a tap on a particular vlan, invoke tap with the create command:

\ttap create <vlan>

For example, to create a host tap with ip and netmask 10.0.0.1/24 on VLAN 5:

\ttap create 5 ip 10.0.0.1/24

Optionally, you can specify the bridge to create the host tap on:

\ttap create <vlan> bridge <bridge> ip <ip>

You can also optionally specify the tap name, otherwise the tap will be in the
form of mega_tapX.

Additionally, you can bring the tap up with DHCP by using "dhcp" instead of a
ip/netmask:

\ttap create 5 dhcp

Tap mirror mirrors packets that traverse the source tap to the destination tap.
Both taps should already exist. You can use taps for VMs from "vm info" or host
taps. For example, to mirror traffic that traverse mega_tapX to mega_tapY on
the default bridge:

\ttap mirror mega_tapX mega_tapY

Mirroring is also supported via vm names/interface indices. The VM interfaces
should already be on the same bridge. VMs must be colocated.

To delete a host tap, use the delete command and tap name from the tap list:

\ttap delete <id>

To delete all host taps, use id all, or 'clear tap':

\ttap delete all

Note: taps created while a namespace is active belong to that namespace and
will only be listed when that namespace is active (or no namespace is active).
Similarly, delete only applies to the taps in the active namespace. Unlike the
"vlans" API, taps with the same name cannot exist in different namespaces."""

_CLEAR_LONG = """Reset state for taps. To delete individual taps, use "tap delete".

"clear tap mirror" can be used to delete one or all mirrors. Mirrors are
identified by the destination for the mirror since a source can have multiple
mirrors. "clear tap" also deletes all mirrors.

Only affects taps on the local node."""


@command(
    "tap",
    "tap <create,> <vlan>",
    "tap <create,> <vlan> name <tap name>",
    "tap <create,> <vlan> <dhcp,> [tap name]",
    "tap <create,> <vlan> ip <ip> [tap name]",
    "tap <create,> <vlan> bridge <bridge>",
    "tap <create,> <vlan> bridge <bridge> name [tap name]",
    "tap <create,> <vlan> bridge <bridge> <dhcp,> [tap name]",
    "tap <create,> <vlan> bridge <bridge> ip <ip> [tap name]",
    "tap <mirror,> <src name> <dst name> [bridge]",
    "tap <delete,> <tap name or all>",
    short="control host taps for communicating between hosts and VMs",
    long=_TAP_LONG,
)
async def tap(ctx: Context, cmd: Command) -> Result:
    """Create, mirror or delete host taps, or list the namespace's."""
    if cmd.flag("create"):
        return await _create(ctx, cmd)
    if cmd.flag("mirror"):
        return await _mirror(ctx, cmd)
    if cmd.flag("delete"):
        await delete_host_taps(ctx, cmd.arg("tap"))
        return None
    net = ctx.state.bridges
    rows = [
        [t.bridge, t.name, ctx.state.vlans.print_vlan(ctx.namespace, t.vlan)]
        for t in net.host_taps(ctx.namespace)
    ]
    return ctx.table(["bridge", "tap", "vlan"], rows)


async def _create(ctx: Context, cmd: Command) -> Result:
    bridge = cmd.arg("bridge")
    name = cmd.arg("tap")
    if bridge in links.RESERVED:
        raise CommandError(f"`{bridge}` is a reserved word -- cannot use for bridge name")
    if name in links.RESERVED:
        raise CommandError(f"`{name}` is a reserved word -- cannot use for tap name")
    vlan = await ctx.state.vlans.lookup(ctx.namespace, cmd.arg("vlan"))
    net = ctx.state.bridges
    tap_name = await net.create_host_tap(bridge, vlan, name or None, ctx.namespace)
    try:
        if cmd.flag("dhcp"):
            logger.debug("obtaining dhcp on tap %s", tap_name)
            await links.dhcp(tap_name)
        elif cmd.arg("ip"):
            logger.debug("setting ip on tap %s: %s", tap_name, cmd.arg("ip"))
            await links.add_address(tap_name, cmd.arg("ip"))
    except CommandError:
        # the address failed: take the tap away again, as 2.8 does
        try:
            await net.destroy_taps([tap_name])
        except CommandError as err:
            logger.error("zombie host tap -- %s %s", tap_name, err)
        raise
    return ctx.respond(tap_name)


async def _mirror(ctx: Context, cmd: Command) -> Result:
    net = ctx.state.bridges
    await net.create_mirror(cmd.arg("bridge"), cmd.arg("src"), cmd.arg("dst"), ctx.namespace)
    return None


async def delete_host_taps(ctx: Context, which: str) -> None:
    """Delete host tap ``which`` of the namespace, or all of them (``all``).

    Raises:
        CommandError: ``unknown tap``, ``not a host tap``,
            ``not a host tap in active namespace``.
    """
    net = ctx.state.bridges
    if which == WILDCARD:
        names = [t.name for t in net.host_taps(ctx.namespace)]
    else:
        found = net.find_tap(which)
        if not found.host:
            raise CommandError("not a host tap")
        if found.namespace != ctx.namespace:
            raise CommandError("not a host tap in active namespace")
        names = [found.name]
    await net.destroy_taps(names)


async def delete_mirrors(ctx: Context, name: str) -> None:
    """Delete the namespace's mirror into ``name``, or all of them (empty or ``all``).

    Raises:
        CommandError: ``not a valid mirror``.
    """
    net = ctx.state.bridges
    mine = net.mirrors(ctx.namespace)
    if name in ("", WILDCARD):
        targets = mine
    else:
        targets = [(b, dst) for b, dst in mine if dst == name]
        if not targets:
            raise CommandError("not a valid mirror")
    for bridge, dst in targets:
        await net.destroy_mirror(bridge, dst)


@command(
    "clear tap",
    "clear tap <mirror,> [name]",
    short="reset tap state",
    long=_CLEAR_LONG,
)
async def clear_tap(ctx: Context, cmd: Command) -> Result:
    """Delete the namespace's mirrors (one or all), and with plain ``clear tap`` its host taps."""
    if cmd.flag("mirror"):
        await delete_mirrors(ctx, cmd.arg("name"))
        return None
    await delete_mirrors(ctx, WILDCARD)
    await delete_host_taps(ctx, WILDCARD)
    return None


@on_clear_all(60)
async def _clear_all(ctx: Context) -> None:
    # after the VMs (their taps go with them), before the bridges (order 70)
    await delete_mirrors(ctx, WILDCARD)
    await delete_host_taps(ctx, WILDCARD)


@on_destroy(50)
async def _namespace_destroyed(ctx: Context, namespace: str) -> None:
    # 2.8 deletes a namespace's host taps when the namespace goes (after its VMs)
    net = ctx.state.bridges
    await net.destroy_taps([t.name for t in net.host_taps(namespace)])
