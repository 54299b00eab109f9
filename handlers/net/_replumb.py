"""Open vSwitch restarted under a running node: put its bridges, taps and flows back.

A restarted ``ovs-vswitchd`` rebuilds what its database holds, but forgets
every OpenFlow flow (IP learning's) and recreates each bridge's own device,
so a socket on the old one hears nothing. A database made anew (a wiped run
directory, a reinstalled switch) holds no bridge at all, while the taps (the
kernel links QEMU and the containers hold) live on, unplugged.

:class:`Replumber` notices a restart without running a program: every
:data:`POLL` seconds it reads ``ovs-vswitchd``'s pid file in the switch's run
directory and asks netlink for the ifindex of each bridge of the table (a bridge device that
comes back with another ifindex was remade). Then, from the node's bridge
table, it makes each bridge again (``add-br`` keeps one that exists), brings
its device up, and puts every tap and trunk back on it with its VLAN and its
``bridge config`` settings, in one transaction per bridge (``del-port``
first: what the database kept is replaced by the same), and last calls
``after`` with the bridges' names (IP learning re-attaches there, flows
included). Bonds, mirrors and tunnels are not rebuilt: the bridge table keeps
only their names, not how they were made; the log names them.

A failed round (the switch not back yet) is tried again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from megabus.bus.tasks import TaskSet
from megabus.handlers.model.paths import read_text
from megabus.handlers.net._bridges import Bridge, Bridges, _bridge_up, port_commands
from megabus.handlers.net._ovs import OvsError

logger = logging.getLogger(__name__)

#: Seconds between looks (a file read and one netlink query, no process).
POLL = 1.0

After = Callable[[list[str]], Awaitable[None]]


def _ifindexes(names: list[str]) -> dict[str, str]:
    # netlink, not /sys/class/net: sysfs shows the namespace that mounted it;
    # pyroute2 (11 MB) on first use, as in taps.py
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {n: str(next(iter(ipr.link_lookup(ifname=n)), "")) for n in names}


class Replumber:
    """Watches one node's switch and rebuilds the node's bridges after a restart."""

    def __init__(self, bridges: Bridges, after: After | None = None) -> None:
        self.bridges = bridges
        self.after = after
        #: Rounds that rebuilt something (tests and ``debug`` read it).
        self.rebuilds = 0
        self._pid = ""
        self._ifindex: dict[str, str] = {}
        self._tasks = TaskSet("replumb")

    async def start(self) -> None:
        self._tasks.spawn(self._watch(), "replumb")

    async def stop(self) -> None:
        await self._tasks.aclose()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                await self.check()
            except OvsError as err:
                logger.info("open vswitch not back yet: %s", err)
            except Exception:  # one bad round must not end the watch
                logger.exception("re-plumbing failed")

    async def check(self) -> bool:
        """Rebuild when the switch restarted since the last look; whether it did."""
        bridges = self.bridges.info()
        if not bridges:
            self._ifindex = {}
            return False
        # only a node that uses bridges has (and looks for) a switch
        switch = await self.bridges.switch()
        pid = read_text(os.path.join(switch.rundir, "ovs-vswitchd.pid")) if switch.rundir else ""
        if switch.rundir and not pid:
            return False  # ovs-vswitchd is down: wait until it is back
        index = await asyncio.to_thread(_ifindexes, [b.name for b in bridges])
        restarted = bool(self._pid) and pid != self._pid
        # a device gone missing may be a bridge being deleted: only one that is
        # back with another ifindex, or a new vswitchd, says "restart"
        remade = [n for n, i in index.items() if i and self._ifindex.get(n, i) != i]
        if restarted or remade:
            logger.warning("open vswitch restarted: re-plumbing %d bridge(s)", len(bridges))
            for br in bridges:
                await self._rebuild(br)
            self.rebuilds += 1
            if self.after is not None:
                await self.after([b.name for b in bridges])
            index = await asyncio.to_thread(_ifindexes, [b.name for b in bridges])
        self._pid = pid
        self._ifindex = index
        return restarted or bool(remade)

    async def _rebuild(self, br: Bridge) -> None:
        switch = await self.bridges.switch()
        await switch.add_bridge(br.name)
        await _bridge_up(br.name)
        cmds: list[list[str]] = []
        for tap in br.taps.values():
            if tap.bond:
                continue
            cmds += port_commands(br.name, tap.name, tap.vlan, host=tap.host, qinq=tap.qinq)
        for trunk in sorted(br.trunks):
            cmds += [["--if-exists", "del-port", trunk], ["add-port", br.name, trunk]]
        # ``bridge config`` settings, in the order they were made
        cmds += [["set", "bridge", br.name, f"{k}={v}"] for k, v in br.config.items()]
        if cmds:
            await switch.transact(cmds)
        skipped = [*br.bonds, *br.mirrors, *br.tunnels]
        if skipped:
            logger.warning("%s: not re-plumbed: %s", br.name, " ".join(sorted(skipped)))
