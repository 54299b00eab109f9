"""``nuke``: clean up what megabus left on this host, then exit (2.8's ``nuke.go``).

It works from the base directory, so a node started on the base of one that
was killed (SIGKILL, a crash) cleans up after it: its QEMU and dnsmasq
processes, containers with their monitors, cgroups and netns links, ``cc
mount`` helpers and mount points, taps and the bridges it created, and the
base directory itself. Only what megabus recorded there is touched
(:mod:`megabus.handlers.host`'s ``nuke_*``). Then, as in 2.8, the node
exits; what could not be undone is logged, and answered as an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers import host
from megabus.handlers.commands.namespace import WILDCARD, destroy
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: Seconds between the answer and the node's exit (the answer must reach the caller).
EXIT_DELAY = 0.5


@command(
    "nuke",
    short="attempt to clean up after a crash",
    long="""After a crash, the VM state on the machine can be difficult to recover from.
nuke attempts to kill all instances of QEMU, remove all taps and bridges, and
removes the temporary minimega state on the harddisk.

Only what megabus recorded under its base directory is touched: processes
that show they are megabus's (QEMU, dnsmasq, containers and their monitors,
cc mount helpers), taps and bridges it created, its mounts and netns links.
The node exits afterwards. Should be run with caution.""",
)
async def nuke(ctx: Context, cmd: Command) -> Result:
    state = ctx.state
    base = state.settings.base
    # read the records before this node's own teardown rewrites them
    found = await asyncio.to_thread(host.nuke_scan, base)
    errors = await host.nuke_adopt(found, state.bridges)
    try:
        await destroy(ctx, WILDCARD)
    except CommandError as err:
        errors.append(str(err))
    await state.dnsmasq.kill_all()
    errors += await host.nuke_clean(found, state.bridges)
    # 2.8 exits here; the caller gets this answer first
    asyncio.get_running_loop().call_later(EXIT_DELAY, state.quit_requested.set)
    if errors:
        raise CommandError("\n".join(errors))
    return None
