"""The ``qos`` family: ``qos add <vm target> <interface> loss|delay|rate``, ``clear qos``.

2.8's patterns, argument checks and texts over :mod:`megabus.handlers.net.qos`,
which runs ``tc`` on the host side of the NIC. Both commands go where the
targeted VMs live (``vmtarget``). ``clear qos <vm>`` without an index
clears every interface, like ``all`` (2.8 answered ``invalid tap index``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.commands.vm import table
from megabus.handlers.language.gotime import parse_duration
from megabus.handlers.model.table import WILDCARD
from megabus.handlers.net import Tap
from megabus.handlers.net import qos as tcq
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.model.vm import VM
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """Add quality-of-service (qos) constraints on mega interfaces to emulate real
networks. Currently only applies qos constraints on the egress side / transmit
direction. Qos constraints can be stacked with multiple calls to <add>, and
must be specified explicitly. Any existing constraints will be overwritten by
additional calls to <add>. VM can be specified with the same target syntax as
the "vm start" api.

Note that qos is namespace aware, and any qos commands will be matched to
target vms within the currently active namespace.

qos constraints include:

- loss\t\t: packets will be randomly dropped with a specified probability
- delay\t\t: delay packets for specified unit of time (ms, ns, etc)
- rate\t\t: impose a maximum bandwidth on an interface in kbit, mbit, or gbit

Note: due to limitations of the underlying tool, "tc", you can only add rate or
loss/delay to a VM. Enabling loss or delay will disable rate and vice versa.

Note: loss and delay need the kernel's netem qdisc (sch_netem); a host without
it answers with an error saying so.

Note: qos applies only to traffic received by the VM (which is "egress" traffic
on the mega_tap interface on the host) -- traffic sent by the VM ("ingress" on
the mega_tap interface on the host) is not policed to the desired rate.

Examples:

\tRandomly drop packets on the 0th interface for vms foo0, 1, and 2 with
\tprobability 25%

\tqos add foo[0-2] 0 loss 25

\tAdd a 100ms delay to every packet on the 0th interface for vm foo and bar

\tqos add foo,bar 0 delay 100ms

\tRate limit the 0th interface on all vms in the active namespace to 1mbit/s

\tqos add all 0 rate 1 mbit

To clear active qos settings, use:

\tclear qos <vm> <interface|all>

Example:

\tclear qos foo all"""

_CLEAR_LONG = """Remove QoS constraints from a VM's interface. To clear QoS from all interfaces
for a VM, use the wildcard:

\tclear qos foo all

See "vm start" for a full description of allowable targets."""


#: Go's ``time.ParseDuration`` units, in nanoseconds.
def go_duration(text: str) -> float | None:
    """Go's ``time.ParseDuration`` in nanoseconds, or None when Go would refuse it."""
    try:
        return float(parse_duration(text))
    except ValueError:
        return None


def go_uint(text: str) -> int | None:
    """``strconv.ParseUint(text, 10, 64)`` or None."""
    if text and text.isascii() and text.isdigit() and int(text) < 2**64:
        return int(text)
    return None


def parse(cmd: Command) -> tuple[str, str]:
    """2.8's ``cliParseQos``: (kind, tc value) of a ``qos add`` command."""
    if cmd.flag("rate"):
        rate = cmd.arg("bw")
        if go_uint(rate) is None:
            raise CommandError(f"invalid rate: `{rate}`")
        unit = next(u for u in ("kbit", "mbit", "gbit") if cmd.flag(u))
        return "rate", rate + unit
    if cmd.flag("loss"):
        loss = cmd.arg("percent")
        try:
            value = float(loss)
        except ValueError:
            value = -1.0
        if not 0 <= value < 100 or loss.strip() != loss or "_" in loss:
            raise CommandError(f"invalid loss: `{loss}`")
        return "loss", loss
    delay = cmd.arg("duration")
    ns = go_duration(delay)
    if ns is None:
        ns = go_duration(delay + "ms")
        if ns is None:
            raise CommandError(f"invalid duration: `{delay}`")
        delay += "ms"
    if ns < 0:
        raise CommandError("delay cannot be negative")
    return "delay", delay


def _tap(ctx: Context, vm: VM, index: int) -> Tap:
    nets = vm.config.networks
    if index >= len(nets):
        raise CommandError(f"invalid tap index specified: {index}")
    name = nets[index].tap
    tap = ctx.state.bridges.any_tap(name) if name else None
    if tap is None:
        raise CommandError(f"tap {name} not found")
    return tap


@command(
    "qos <add,> <vm target> <interface> <loss,> <percent>",
    "qos <add,> <vm target> <interface> <delay,> <duration>",
    "qos <add,> <vm target> <interface> <rate,> <bw> <kbit,mbit,gbit>",
    short="add qos constraints to an interface",
    long=_LONG,
    kind="vmtarget",
)
async def qos_add(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliUpdateQos``."""
    iface = cmd.arg("interface")
    if iface == WILDCARD:
        raise CommandError("wildcard qos not implemented")
    index = go_uint(iface)
    if index is None or index >= 2**32:
        raise CommandError(f"invalid tap index {iface}")
    kind, value = parse(cmd)

    async def update(vm: VM, wild: bool) -> bool:
        await tcq.add(_tap(ctx, vm, index), kind, value)
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), update)
    return None


@command("clear qos <vm target> [tap index]", short="clear qos constraints on an interface",
         long=_CLEAR_LONG, kind="vmtarget")  # fmt: skip
async def clear_qos(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliClearQos``."""
    which = cmd.arg("tap") or WILDCARD
    index = go_uint(which)
    if which != WILDCARD and (index is None or index >= 2**32):
        raise CommandError(f"invalid tap index {which}")

    async def clear(vm: VM, wild: bool) -> bool:
        if index is None:
            for i in range(len(vm.config.networks)):
                await tcq.remove(_tap(ctx, vm, i))
        else:
            await tcq.remove(_tap(ctx, vm, index))
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), clear)
    return None
