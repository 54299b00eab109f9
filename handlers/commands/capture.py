"""The ``capture`` family: pcap captures of VM interfaces and bridges, per namespace.

Captures belong to the namespace that started them (2.8: ``ns.captures``):
``capture`` lists only those, ``clear capture`` stops only those. The work
is one ``tcpdump`` per capture (:mod:`megabus.handlers.net.capture`).

NetFlow is not offered: 2.8 exports OVS NetFlow to a collector of its own
(``gonetflow``), which this node does not have yet, so the netflow forms
answer with a clear error rather than pretending; their settings (mode,
gzip, timeout) are kept and shown as 2.8 does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.commands.vm import table
from megabus.handlers.model.table import WILDCARD, go_atoi, vm_not_found
from megabus.handlers.net import Captures, vmnics
from megabus.handlers.net import capture as pcap
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

HEADER = ["bridge", "type", "interface", "mode", "compress", "path"]
NETFLOW_MISSING = (
    "netflow capture is not available on this node: it has no NetFlow collector "
    "(capture pcap works)"
)

_LONG = """Capture experiment data to pcap files, per namespace.

To capture the traffic of a VM's interface (by index, as in "vm info"):

\tcapture pcap vm <vm name> <interface index> <filename>

To capture everything on a bridge (a mirror into a new host tap):

\tcapture pcap bridge <bridge> <filename>

"capture pcap snaplen" and "capture pcap filter" set the snap length and BPF
filter of later captures. Stop captures with "capture pcap delete ..." or
"clear capture". Relative file names are under the files directory.

NetFlow capture is not available on this node."""


def _path(ctx: Context, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(ctx.state.settings.files_dir, name)


async def _stop(ctx: Context, caps: Captures, doomed: list[pcap.Capture]) -> None:
    net = ctx.state.bridges
    for c in doomed:
        with contextlib.suppress(ValueError):
            caps.running.remove(c)
        await pcap.stop(c.proc)
        if c.mirror_tap:
            try:
                await net.destroy_taps([c.mirror_tap])
            except CommandError as err:
                logger.error("capture: cannot remove mirror tap %s: %s", c.mirror_tap, err)


@command(
    "capture",
    "capture <pcap,> <snaplen,> [size]",
    "capture <pcap,> <filter,> [bpf]",
    "capture <netflow,> <mode,> [raw,ascii]",
    "capture <netflow,> <gzip,> [true,false]",
    short="capture experiment data",
    long=_LONG,
    kind="broadcast",
)
async def capture(ctx: Context, cmd: Command) -> Result:
    """List the namespace's captures, or show or set a capture setting."""
    caps = ctx.state.captures_of(ctx.namespace)
    if cmd.flag("snaplen"):
        if "size" in cmd.string_args:
            size = go_atoi(cmd.arg("size"))
            if size is None or not 0 <= size < 2**32:
                raise CommandError(
                    f'strconv.ParseUint: parsing "{cmd.arg("size")}": invalid syntax'
                )
            caps.snaplen = size
            return None
        return ctx.respond(str(caps.snaplen))
    if cmd.flag("filter"):
        if "bpf" in cmd.string_args:
            caps.bpf = cmd.arg("bpf")
            return None
        return ctx.respond(caps.bpf)
    if cmd.flag("mode"):
        if cmd.flag("raw") or cmd.flag("ascii"):
            caps.mode = "raw" if cmd.flag("raw") else "ascii"
            return None
        return ctx.respond(caps.mode)
    if cmd.flag("gzip"):
        if cmd.flag("true") or cmd.flag("false"):
            caps.compress = cmd.flag("true")
            return None
        return ctx.respond(str(caps.compress).lower())
    rows = [[c.bridge, c.kind, c.interface, "", "", c.path] for c in caps.running]
    return ctx.table(HEADER, rows)


@command(
    "capture <pcap,> vm <vm name> <interface index> <filename>",
    "capture <pcap,> <delete,> vm <vm name>",
    short="capture a VM's interface to pcap",
    long=_LONG,
    kind="vmtarget",
)
async def capture_vm(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliCaptureVM``."""
    caps = ctx.state.captures_of(ctx.namespace)
    name = cmd.arg("vm")
    if cmd.flag("delete"):
        if name == WILDCARD:
            doomed = [c for c in caps.running if c.vm_id >= 0]
        else:
            vm = table(ctx).find(ctx.namespace, name)
            if vm is None:
                raise vm_not_found(name)
            doomed = [c for c in caps.running if c.vm_id == vm.id]
        await _stop(ctx, caps, doomed)
        return None
    iface = cmd.arg("interface")
    num = go_atoi(iface)
    if num is None:
        raise CommandError(f"invalid interface: `{iface}`")
    vm = table(ctx).find(ctx.namespace, name)
    if vm is None:
        raise vm_not_found(name)
    nic = vmnics.nic(vm, num)
    if not nic.tap:
        raise CommandError(f"interface {num} of {vm.name} has no tap")
    path = _path(ctx, cmd.arg("filename"))
    proc = await pcap.start_pcap(nic.tap, path, caps.snaplen, caps.bpf)
    caps.running.append(
        pcap.Capture(nic.bridge, "pcap", f"{vm.name}:{num}", path, nic.tap, proc, vm_id=vm.id)
    )
    return None


@command(
    "capture <pcap,> bridge <bridge> <filename>",
    "capture <pcap,> <delete,> bridge <bridge>",
    "capture <netflow,> <bridge,> <bridge> <filename>",
    "capture <netflow,> <bridge,> <bridge> <tcp,udp> <hostname:port>",
    "capture <netflow,> <delete,> bridge <bridge>",
    "capture <netflow,> <timeout,> [timeout in seconds]",
    short="capture a bridge to pcap",
    long=_LONG,
)
async def capture_bridge(ctx: Context, cmd: Command) -> Result:
    """Bridge captures (local only, as in 2.8)."""
    if cmd.flag("netflow"):
        raise CommandError(NETFLOW_MISSING)
    caps = ctx.state.captures_of(ctx.namespace)
    bridge = cmd.arg("bridge")
    if cmd.flag("delete"):
        doomed = [c for c in caps.running if c.mirror_tap and c.bridge == bridge]
        if not doomed:
            raise CommandError(f"no pcap capture on bridge {bridge}")
        await _stop(ctx, caps, doomed)
        return None
    net = ctx.state.bridges
    tap = await net.create_host_tap(bridge, 0, None, ctx.namespace)
    try:
        await net.create_mirror(bridge, "", tap, ctx.namespace)
        path = _path(ctx, cmd.arg("filename"))
        proc = await pcap.start_pcap(tap, path, caps.snaplen, caps.bpf)
    except CommandError:
        await net.destroy_taps([tap])
        raise
    br = net.lookup(bridge)
    caps.running.append(
        pcap.Capture(br.name if br else bridge, "pcap", "", path, tap, proc, mirror_tap=tap)
    )
    return None


@command(
    "clear capture [netflow,pcap]",
    short="reset capture state",
    long='Resets state for captures across the namespace. See "help capture" for more information.',
    kind="broadcast",
)
async def clear_capture(ctx: Context, cmd: Command) -> Result:
    """Stop every capture of the namespace (netflow has none)."""
    caps = ctx.state.captures_of(ctx.namespace)
    await _stop(ctx, caps, list(caps.running))
    return None


@on_destroy(30)
async def _namespace_destroyed(ctx: Context, namespace: str) -> None:
    # before its VMs and host taps go (orders 40, 50)
    caps = ctx.state.captures_of(namespace)
    await _stop(ctx, caps, list(caps.running))
    ctx.state.captures.pop(namespace, None)


@on_clear_all(10)
async def _clear_all(ctx: Context) -> None:
    for namespace in list(ctx.state.captures):
        caps = ctx.state.captures_of(namespace)
        await _stop(ctx, caps, list(caps.running))
    ctx.state.captures.clear()
