"""OVS bonds of VM taps (``vm net bond``, ``vm config bonds``, ``clear vm net bond``).

A bond replaces its member ports on the bridge by one OVS bond port that
carries their VLAN (the first member's, as in 2.8). The members stay in the
bridge table with their own VLAN and QinQ flag, marked with the bond's name,
so clearing the bond puts each back exactly as it was. Bonds live in Open
vSwitch only (the userspace datapath here; no bonding kernel module needed).

Everything one bond change needs goes out as a single OVS transaction: if it
fails nothing changed, which is 2.8's "re-add the members" without the window
in which the members are off the bridge.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping

from megabus.bus.errors import CommandError
from megabus.handlers.model.bondspec import AUTO_NAME_PREFIX, BOND_MODES, LACP_MODES
from megabus.handlers.net import taps as links
from megabus.handlers.net._bridges import Bridge, Bridges, port_commands
from megabus.handlers.net._ovs import OvsError

logger = logging.getLogger(__name__)

#: 2.8's name counter is process-wide (``mega_bond%d``).
_NAMES = itertools.count()


def check_modes(mode: str, lacp: str) -> None:
    """Refuse unknown modes and 2.8's one bad pair (balance-tcp without LACP)."""
    if mode not in BOND_MODES:
        raise CommandError("unknown bond mode specified")
    if lacp not in LACP_MODES:
        raise CommandError("unknown LACP mode specified")
    if mode == "balance-tcp" and lacp == "off":
        raise CommandError("LACP mode must be set to active or passive for balance-tcp bond mode")


def find_bond(net: Bridges, name: str) -> Bridge | None:
    """The bridge that holds bond ``name``."""
    for br in net.info():
        if name in br.bonds:
            return br
    return None


def _new_name(net: Bridges) -> str:
    while True:
        name = f"{AUTO_NAME_PREFIX}{next(_NAMES)}"
        if find_bond(net, name) is None and net.any_tap(name) is None:
            return name


def bond_commands(
    bridge: str, name: str, taps: list[str], vlan: int, mode: str, lacp: str, *,
    fallback: bool, qinq: bool,
) -> list[list[str]]:  # fmt: skip
    """2.8's bond commands: members off the bridge, the bond on, its settings (one transaction)."""
    cmds = [["del-port", bridge, t] for t in taps]
    cmds.append(["add-bond", bridge, name, *taps])
    settings = ["set", "port", name, f"tag={vlan}", f"lacp={lacp}"]
    if fallback and lacp != "off":
        settings.append("other_config:lacp-fallback-ab=true")
    settings.append(f"bond_mode={mode}")
    cmds.append(settings)
    if qinq:
        cmds.append(["set", "port", name, "vlan_mode=dot1q-tunnel", f"tag={vlan}"])
    return cmds


async def add_bond(
    net: Bridges,
    bridge: str,
    members: Mapping[str, int],
    vlan: int,
    *,
    name: str = "",
    mode: str,
    lacp: str,
    fallback: bool = True,
    qinq: bool = False,
) -> str:
    """Bond the taps ``members`` (tap -> its VLAN) on ``bridge``; returns the bond's name.

    Raises:
        CommandError: bad modes or name, fewer than two members, a member not on
            the bridge or already bonded, a name in use, or OVS refused.
    """
    check_modes(mode, lacp)
    if len(members) < 2:
        raise CommandError("a bond needs at least two interfaces")
    br = await net.get(bridge)
    for tap in members:
        t = br.taps.get(tap)
        if t is None:
            raise CommandError(f"tap {tap} is not on bridge {br.name}")
        if t.bond:
            raise CommandError(f"tap {tap} is already part of bond {t.bond}")
    if name:
        links.check_name(name, "bond")
        if find_bond(net, name) is not None or net.any_tap(name) is not None:
            raise CommandError(f"bond {name} already exists")
    else:
        name = _new_name(net)
    # reserve in the table before the first await
    br.bonds[name] = dict(members)
    for tap in members:
        br.taps[tap].bond = name
    taps = list(members)
    cmds = bond_commands(br.name, name, taps, vlan, mode, lacp, fallback=fallback, qinq=qinq)
    try:
        switch = await net.switch()
        await switch.transact(cmds)
    except (OvsError, CommandError) as err:
        _release(br, name)
        raise CommandError(f"add bond failed: {err}") from None
    logger.info("bond %s on %s: %s (vlan %d, %s, lacp %s)", name, br.name, taps, vlan, mode, lacp)
    net.write_files()
    return name


def _release(br: Bridge, name: str) -> dict[str, int]:
    members = br.bonds.pop(name, {})
    for tap in members:
        t = br.taps.get(tap)
        if t is not None and t.bond == name:
            t.bond = ""
    return members


async def delete_bond(net: Bridges, name: str, *, restore: bool = True) -> None:
    """Remove bond ``name``; with ``restore`` its members go back on the bridge as they were.

    Without ``restore`` (the VM is being flushed) the members stay off the
    bridge, for their taps are about to be destroyed.

    Raises:
        CommandError: ``bond <name> doesn't exist``, or OVS refused.
    """
    br = find_bond(net, name)
    if br is None:
        raise CommandError(f"bond {name} doesn't exist")
    members = _release(br, name)
    cmds: list[list[str]] = [["--if-exists", "del-port", br.name, name]]
    if restore:
        for tap in members:
            t = br.taps.get(tap)
            if t is not None:
                cmds += port_commands(br.name, tap, t.vlan, host=False, qinq=t.qinq)
    try:
        switch = await net.switch()
        await switch.transact(cmds)
    except (OvsError, CommandError) as err:
        br.bonds[name] = members
        for tap in members:
            if tap in br.taps:
                br.taps[tap].bond = name
        raise CommandError(f"delete bond failed: {err}") from None
    net.write_files()
