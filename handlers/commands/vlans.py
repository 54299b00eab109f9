"""The ``vlans`` family: list, add, range and blacklist VLAN aliases, ``clear vlans``.

The table itself lives in :class:`megabus.handlers.net.VlanStore`
(``ctx.state.vlans``), shared by every node; this module only speaks 2.8's
command language and texts over it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import DEFAULT_NAMESPACE
from megabus.handlers.net import parse_number
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: ``clear vlans all`` resets every namespace (2.8's ``Wildcard``).
WILDCARD = "all"

_VLANS_LONG = """Display information about allocated VLANs. With no arguments, prints out the
known VLAN aliases. The following subcommands are supported:

range\t\t- view or set the VLAN range
add   \t\t- add an alias
blacklist \t- view or create blacklisted VLAN

Note: this command is namespace aware so, for example, adding a range applies
to all *new* VLAN aliases in the current namespace."""

_CLEAR_LONG = """Clear one or more aliases, freeing the VLANs for reuse. You should only clear
allocated VLANs once you have killed all the VMs connected to them.

By default, "clear vlans" only clears aliases for the current namespace. If
given "all" as the prefix, all state about managed VLANs is cleared across
*all* namespaces, including blacklisted VLANS. You should only use this if you
want a completely clean slate."""


def range_namespace(namespace: str) -> str:
    """The store's range key: the default namespace sets the global range (``""``)."""
    return "" if namespace == DEFAULT_NAMESPACE else namespace


@command(
    "vlans",
    "vlans <range,>",
    "vlans <range,> <min> <max>",
    "vlans <add,> <alias> <vlan>",
    "vlans <blacklist,> [vlan]",
    short="display allocated VLANs",
    long=_VLANS_LONG,
)
async def vlans(ctx: Context, cmd: Command) -> Result:
    """Dispatch to the sub-command, or list the namespace's aliases."""
    if cmd.flag("add"):
        return await _add(ctx, cmd)
    if cmd.flag("range"):
        return await _range(ctx, cmd)
    if cmd.flag("blacklist"):
        return await _blacklist(ctx, cmd)
    rows = [[alias, str(vlan)] for alias, vlan in ctx.state.vlans.aliases(ctx.namespace)]
    return ctx.table(["alias", "vlan"], rows)


def _vlan_number(text: str) -> int:
    number = parse_number(text)
    if number is None:
        raise CommandError("expected integer VLAN")
    if not 0 <= number < 4096:
        raise CommandError("invalid VLAN (0 <= vlan < 4096)")
    return number


async def _add(ctx: Context, cmd: Command) -> Result:
    vlan = _vlan_number(cmd.arg("vlan"))
    await ctx.state.vlans.add_alias(ctx.namespace, cmd.arg("alias"), vlan)
    return None


async def _range(ctx: Context, cmd: Command) -> Result:
    name = range_namespace(ctx.namespace)
    store = ctx.state.vlans
    if cmd.arg("min") and cmd.arg("max"):
        lo, hi = parse_number(cmd.arg("min")), parse_number(cmd.arg("max"))
        if lo is None or hi is None:
            raise CommandError("expected integer values for min/max")
        if hi <= lo:
            raise CommandError("expected min > max")
        if lo < 0 or hi > 4096:
            raise CommandError("invalid VLAN range (0 <= min < max <= 4096)")
        await store.set_range(name, lo, hi)
        return None
    rows = [[str(r.min), str(r.max), str(r.next)] for ns, r in store.ranges().items() if ns == name]
    return ctx.table(["min", "max", "next"], rows)


async def _blacklist(ctx: Context, cmd: Command) -> Result:
    text = cmd.arg("vlan")
    if text:
        await ctx.state.vlans.blacklist(_vlan_number(text))
        return None
    return ctx.table(["vlan"], [[str(v)] for v in ctx.state.vlans.blacklisted()])


@command("clear vlans [prefix]", short="clear allocated VLANs", long=_CLEAR_LONG)
async def clear_vlans(ctx: Context, cmd: Command) -> Result:
    """Drop the namespace's aliases (by prefix), or everything with ``all``."""
    prefix = cmd.arg("prefix")
    if prefix == WILDCARD:
        await ctx.state.vlans.clear_all()
    else:
        await ctx.state.vlans.delete(ctx.namespace, prefix)
    return None


@on_clear_all(40)
async def _clear_all(ctx: Context) -> None:
    # 2.8's `clear all` ends with `clear vlans all`; the store then falls back
    # to this node's -vlanrange, not 2.8's hard-coded 101-4096
    await ctx.state.vlans.clear_all()
