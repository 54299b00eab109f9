"""The ``host`` command: this node's resources and VM commitments, 2.8's columns.

``host`` is a broadcast command, so typed by a user it answers for every host
of the namespace, one row each (the ``host`` column comes from annotation).
The VM figures span all namespaces of the node, as in 2.8. ``cpucommit``,
``memcommit`` and ``netcommit`` sum the vCPUs, memory (MB) and NICs of the
VMs that hold resources (every state but QUIT and ERROR: a paused guest keeps
its memory); ``vmlimit`` is the smallest ``coschedule + 1`` among them, or
-1. The numbers come from :mod:`megabus.handlers.node.hoststats`, which the
scheduler reads too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from megabus.handlers.language.gotime import format_seconds as go_duration
from megabus.handlers.node.hoststats import stats
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: 2.8's ``hostInfoKeys``: the table's columns, in order.
COLUMNS = (
    "cpus", "load", "memused", "memtotal", "rx", "tx", "vms", "vmlimit",
    "cpucommit", "memcommit", "netcommit", "uptime",
)  # fmt: skip
#: Single-field forms beyond the table: 2.8's ``name``, and ``accel`` (ours).
EXTRA = ("name", "accel")
_LONG = """Report information about hosts in the current namespace:

- cpucommit  : total cpu commit
- cpus       : number of cpus
- load       : system load average
- memcommit  : total memory commit in MB
- memtotal   : total memory in MB
- memused    : memory used in MB
- name       : name of the machine
- netcommit  : total network interface commit
- rx         : RX bandwidth stats (MB/s)
- tx         : TX bandwidth stats (MB/s)
- uptime     : uptime
- vms        : number of VMs
- vmlimit    : limit based on coschedule values (-1 is no limit)
- accel      : how KVM guests run here: kvm, or tcg (software) without /dev/kvm

All VM-based stats are computed across namespaces."""


def show(stats: dict[str, Any], key: str) -> str:
    """2.8's ``HostStats.Print``."""
    value = stats[key]
    if key in ("rx", "tx"):
        return f"{value:.1f}"
    if key == "uptime":
        return go_duration(value)
    return str(value)


@command(
    "host",
    *(f"host <{key},>" for key in sorted((*COLUMNS, *EXTRA))),
    short="report information about hosts",
    long=_LONG,
    kind="broadcast",
)
async def host(ctx: Context, cmd: Command) -> Result:
    """The whole row, or one field as a simple response; ``data`` holds every field."""
    values = await stats(ctx.state)
    for key in (*COLUMNS, *EXTRA):
        if cmd.flag(key):
            resp = ctx.respond(show(values, key))
            break
    else:
        resp = ctx.table(list(COLUMNS), [[show(values, k) for k in COLUMNS]])
    resp.data = values
    return resp
