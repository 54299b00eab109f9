"""``cc mount`` and ``clear cc mount``: a guest's filesystem on this node (2.8's ``cc_cli.go``).

A container's root is bind-mounted; a guest with an agent (KVM over
virtio-serial, or TCP) is mounted through FUSE, its files served by the
agent over the cc connection (:mod:`megabus.handlers.cc.mounts` says why).
``cc mount`` lists this node's mounts of the namespace (``name | uuid |
addr | path``, one answer per host: broadcast); ``clear cc mount`` takes a
UUID, a name or a mount path, or nothing for every mount, on every host.
Plain ``clear cc`` and destroying the namespace unmount too, as in 2.8.

The VM must run on this node: 2.8 mounted a remote host's 9p server over the
network; megabus does not carry a guest's files between nodes (yet), so
``cc mount`` is typed on the node that runs the VM.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers import vms
from megabus.handlers.commands.cc import server
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.model.vm import VMType
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """Mount the filesystem of a VM on this host. A container's root filesystem is
bind-mounted; the filesystem of a VM running the megabus agent (KVM guests) is
mounted through FUSE, served by the agent over the cc connection. For example:

\tcc mount vm-0 /mnt/vm-0

"cc mount" lists the mounts (name, uuid, addr, path) and "clear cc mount
[uuid or name or path]" removes them. The VM must run on the host where the
command is typed."""


@command("cc mount", short="list mounted filesystems", kind="broadcast")
async def cc_mount_list(ctx: Context, cmd: Command) -> Result:
    """This node's mounts of the namespace."""
    return ctx.table(["name", "uuid", "addr", "path"], ctx.state.cc.mounts.rows(ctx.namespace))


@command("cc mount <uuid or name> [path]", short="mount VM filesystem", long=_LONG)
async def cc_mount(ctx: Context, cmd: Command) -> Result:
    """Mount one VM's filesystem on ``path``."""
    path = cmd.arg("path")
    if not path:
        raise CommandError("must provide a mount path")
    if not await asyncio.to_thread(os.path.isdir, path):
        raise CommandError("mount point does not exist")
    target = cmd.arg("uuid")
    vm = ctx.state.vms.find(ctx.namespace, target)
    if vm is None:
        raise CommandError(f"vm not found: {target}")
    mounts = ctx.state.cc.mounts
    if vm.type == VMType.CONTAINER:
        root = vms.guest_root(vm)
        if not root:
            raise CommandError(f"vm {vm.name} has no filesystem to mount (not launched)")
        await mounts.mount_bind(vm, root, path)
    else:
        await mounts.mount_agent(await server(ctx), vm, path)
    return None


@command(
    "clear cc mount [uuid or name or path]",
    short="unmount VM filesystem",
    long="""Unmount VM filesystems mounted with "cc mount": one, by UUID, name or mount
path, or all of them.""",
    kind="broadcast",
)
async def clear_cc_mount(ctx: Context, cmd: Command) -> Result:
    """Unmount the matching mounts (failures are logged, as in 2.8)."""
    await ctx.state.cc.mounts.clear(ctx.namespace, cmd.arg("uuid"))
    return None


@on_destroy(5)
async def _destroy(ctx: Context, namespace: str) -> None:
    # first, as 2.8: nothing may stay mounted from a VM about to be killed
    await ctx.state.cc.mounts.clear(namespace)
