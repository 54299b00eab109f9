"""``optimize`` and ``clear optimize`` (2.8's ``optimize_cli.go``): KSM, hugepages, CPU affinity.

Both commands are broadcast: typed by a user they run on every host of the
namespace, each answering for itself. KSM is one setting of the host;
affinity and hugepages belong to the namespace. The work is the host
engine's (:class:`megabus.handlers.host.Optimizer`, the node's
``state.optimize``); whether the host has KSM or hugepages is found here,
when the command runs, and a missing feature is a clear error.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from megabus.handlers import host
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """Enable or disable several virtualization optimizations, including Kernel
Samepage Merging, CPU affinity for VMs, and the use of hugepages.

To enable/disable Kernel Samepage Merging (KSM):

	optimize ksm [true,false]

To enable hugepage support for future VM launches (the path is a hugetlbfs
mount; the host must have hugepages reserved, see vm.nr_hugepages):

	optimize hugepages </path/to/hugepages_mount>

To disable hugepage support:

	clear optimize hugepages

To enable/disable CPU affinity support for VMs in the namespace:

	optimize affinity [true,false]

To set a CPU set filter for the affinity scheduler, for example (to use only
CPUs 1, 2-20):

	optimize affinity filter [1,2-20]

If affinity is already enabled, will cause reassignment of affinity for all
running VMs to match the new filter.

To clear a CPU set filter:

	clear optimize affinity filter

See note above about reassigning affinity.

To view current CPU affinity mappings (by PID):

	optimize affinity

To disable all optimizations, use "clear optimize".

Note: affinity and hugepages can be selectively enabled in particular
namespaces. KSM affects VMs across all namespaces."""


@command(
    "optimize",
    "optimize <affinity,> <filter,> <filter>",
    "optimize <affinity,> [true,false]",
    "optimize <hugepages,> [path]",
    "optimize <ksm,> [true,false]",
    short="enable or disable several virtualization optimizations",
    long=_LONG,
    kind="broadcast",
)
async def optimize(ctx: Context, cmd: Command) -> Result:
    opt = ctx.state.optimize
    if cmd.flag("ksm"):
        if cmd.flag("true"):
            await asyncio.to_thread(opt.ksm.enable)
        elif cmd.flag("false"):
            await asyncio.to_thread(opt.ksm.disable)
        else:
            return ctx.respond("true" if opt.ksm.enabled else "false")
        return None
    if cmd.flag("hugepages"):
        path = cmd.arg("path")
        if not path:
            return ctx.respond(opt.hugepages.get(ctx.namespace, ""))
        await asyncio.to_thread(host.check_hugepages, path)
        opt.hugepages[ctx.namespace] = path
        return None
    if cmd.flag("affinity"):
        if cmd.flag("filter"):
            cpus = host.cpu_filter(cmd.arg("filter"), os.cpu_count() or 1)
            await asyncio.to_thread(opt.set_filter, ctx.namespace, cpus)
        elif cmd.flag("true"):
            await asyncio.to_thread(opt.enable_affinity, ctx.namespace)
        elif cmd.flag("false"):
            await asyncio.to_thread(opt.affinity_of(ctx.namespace).disable)
        else:
            return ctx.table(["cpu", "pids"], opt.affinity_of(ctx.namespace).rows())
        return None
    aff = opt.affinity.get(ctx.namespace)
    row = [
        "enabled" if opt.ksm.enabled else "disabled",
        opt.hugepages.get(ctx.namespace) or "disabled",
        "enabled" if aff is not None and aff.enabled else "disabled",
    ]
    return ctx.table(["ksm", "hugepages", "affinity"], [row])


@command(
    "clear optimize",
    "clear optimize <affinity,> [filter,]",
    "clear optimize <hugepages,>",
    "clear optimize <ksm,>",
    short="reset virtualization optimization state",
    long="""Resets state for virtualization optimizations. See "help optimize" for more
information.""",
    kind="broadcast",
)
async def clear_optimize(ctx: Context, cmd: Command) -> Result:
    opt = ctx.state.optimize
    if cmd.flag("filter"):
        await asyncio.to_thread(opt.clear_filter, ctx.namespace)
    elif cmd.flag("affinity"):
        aff = opt.affinity_of(ctx.namespace)
        if aff.enabled:  # 2.8 ignores "not enabled" here
            await asyncio.to_thread(aff.disable)
    elif cmd.flag("hugepages"):
        opt.hugepages.pop(ctx.namespace, None)
    elif cmd.flag("ksm"):
        await asyncio.to_thread(opt.ksm.disable)
    else:
        await asyncio.to_thread(opt.clear, ctx.namespace)
    return None


@on_destroy(60)
async def _destroy(ctx: Context, namespace: str) -> None:
    # after the VMs (order 50): nothing of the namespace is left to unpin
    ctx.state.optimize.drop_namespace(namespace)
