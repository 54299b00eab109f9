"""The ``bridge`` family: list the node's bridges, trunks, tunnels, config, destroy.

``bridge`` is not namespace-aware (2.8): it shows every bridge of the node.
Like 2.8, every form first gets its bridge, creating it in Open vSwitch on
first use (plain ``bridge`` gets the default one, ``mega_bridge``); only
``bridge destroy`` refuses a bridge the node does not know.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.handlers.language.gojson import go_json
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

HEADER = ["bridge", "preexisting", "vlans", "trunks", "tunnels", "bonds", "config"]

_LONG = """When called with no arguments, display information about all managed bridges.

To add a trunk interface to a specific bridge, use 'bridge trunk'. For example,
to add interface bar to bridge foo:

\tbridge trunk foo bar

To create a vxlan or GRE tunnel to another bridge, use 'bridge tunnel'. For
example, to create a vxlan tunnel to another bridge with IP 10.0.0.1:

\tbridge tunnel vxlan mega_bridge 10.0.0.1

Note: bridge is not a namespace-aware command."""


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


@command(
    "bridge",
    "bridge <config,> <bridge> <config>",
    "bridge <trunk,> <bridge> <interface>",
    "bridge <notrunk,> <bridge> <interface>",
    "bridge <tunnel,> <vxlan,gre> <bridge> <remote ip> [key]",
    "bridge <notunnel,> <bridge> <interface>",
    "bridge <destroy,> <bridge>",
    short="display information and modify virtual bridges",
    long=_LONG,
)
async def bridge(ctx: Context, cmd: Command) -> Result:
    """Change one bridge, or list them all."""
    net = ctx.state.bridges
    name = cmd.arg("bridge")
    iface = cmd.arg("interface")
    if cmd.flag("destroy"):
        await net.destroy_bridge(name)
        return None
    await net.get(name)
    if cmd.flag("trunk"):
        await net.add_trunk(name, iface)
    elif cmd.flag("notrunk"):
        await net.remove_trunk(name, iface)
    elif cmd.flag("tunnel"):
        kind = "gre" if cmd.flag("gre") else "vxlan"
        await net.add_tunnel(name, kind, cmd.arg("remote"), cmd.arg("key"))
    elif cmd.flag("notunnel"):
        await net.remove_tunnel(name, iface)
    elif cmd.flag("config"):
        await net.set_config(name, cmd.arg("config"))
    else:
        rows = []
        for br in net.info():
            vlans = sorted(ctx.state.vlans.print_vlan(ctx.namespace, v) for v in br.vlans())
            bonds = [f"{b} ({' '.join(sorted(m))})" for b, m in sorted(br.bonds.items())]
            rows.append(
                [
                    br.name,
                    str(br.preexisting).lower(),
                    _go_list(vlans),
                    _go_list(sorted(br.trunks)),
                    _go_list(sorted(br.tunnels)),
                    _go_list(bonds),
                    go_json(br.config),
                ]
            )
        return ctx.table(HEADER, rows)
    return None


@on_clear_all(70)
async def _clear_all(ctx: Context) -> None:
    # after VMs and host taps: every bridge the node used goes, as on 2.8's teardown
    await ctx.state.bridges.destroy_all()
