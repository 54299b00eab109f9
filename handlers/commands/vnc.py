"""The ``vnc`` family: kb/fb recording, kb playback, the listing and ``clear vnc``.

2.8's eleven patterns over :class:`megabus.handlers.vnc.Screens`, scoped to
the namespace. Recording and playback run where the VM lives (``vmtarget``);
the listing and ``clear vnc`` reach every host of the namespace. A relative
file name is under the files directory (``-filepath``), as in 2.8.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.commands.vm import find_kvm, table
from megabus.handlers.model.vm import VMType
from megabus.handlers.node.registry import Result, command
from megabus.handlers.vms import KvmRuntime

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.model.vm import VM
    from megabus.handlers.node.context import Context

_RECORD_LONG = """Record keyboard and mouse events sent via the web interface to the
selected VM. Can also record the framebuffer for the specified VM so that a
user can watch a video of interactions with the VM.

If record is selected, a file will be created containing a record of mouse
and keyboard actions by the user or of the framebuffer for the VM.

Note: recordings are written to the host where the VM is running."""

_PLAY_LONG = """Playback and interact with a previously recorded vnc kb session file.

If play is selected, the specified file (created using vnc record) will be read
and processed as a sequence of time-stamped mouse/keyboard events to send to
the specified VM(s). See "vm start" for a full description of the allowable
targets. VMs without a valid playback that are part of the target will return a
"kb playback not found" error.

Playbacks can be paused with the pause command, and resumed using continue. The
step command will immediately move to the next event contained in the playback
file. Use the getstep command to view the current vnc event. Calling stop will
end a playback.

VNC playback also supports injecting mouse/keyboard events in the format found
in the playback file. Injected commands must omit the time delta as they are
sent immediately.

vnc host vm_id inject PointerEvent,0,465,245

Comments in the playback file are logged at the info level. An example is given
below.

#: This is an example of a vnc playback comment"""


async def _path(ctx: Context, name: str) -> str:
    if os.path.isabs(name):
        return name
    files = ctx.state.settings.files_dir
    # 2.8's files directory exists from the start; ours is made on first use
    await asyncio.to_thread(os.makedirs, files, exist_ok=True)
    return os.path.join(files, name)


def _socket(vm: VM) -> str:
    runtime = vm.runtime
    if not isinstance(runtime, KvmRuntime):
        raise CommandError(f"vm not KVM: {vm.name}")
    return runtime.file("vnc")


@command(
    "vnc <record,> <kb,fb> <vm name> <filename>",
    "vnc <stop,> <kb,fb> <vm name>",
    short="record VNC kb or fb",
    long=_RECORD_LONG,
    kind="vmtarget",
)
async def vnc_record(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliVNCRecord``."""
    vm = find_kvm(ctx, cmd.arg("vm"))
    rec = ctx.state.vnc.recorder(ctx.namespace)
    kb = cmd.flag("kb")
    if cmd.flag("record"):
        path = await _path(ctx, cmd.arg("filename"))
        if kb:
            await rec.record_kb(vm.name, path)
        else:
            await rec.record_fb(vm.name, _socket(vm), path)
    elif kb:
        await rec.stop_kb(vm.name)
    else:
        await rec.stop_fb(vm.name)
    return None


@command(
    "vnc <play,> <vm target> <filename>",
    "vnc <stop,> <vm target>",
    "vnc <pause,> <vm target>",
    "vnc <continue,> <vm target>",
    "vnc <step,> <vm target>",
    "vnc <getstep,> <vm target>",
    "vnc <inject,> <vm target> <cmd>",
    short="play VNC kb",
    long=_PLAY_LONG,
    kind="vmtarget",
)
async def vnc_play(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliVNCPlay``: one action on the playback of each targeted KVM VM."""
    player = ctx.state.vnc.player(ctx.namespace)
    path = await _path(ctx, cmd.arg("filename")) if cmd.flag("play") else ""
    rows: list[list[str]] = []

    async def one(vm: VM, wild: bool) -> bool:
        if vm.type is not VMType.KVM:
            return False
        if cmd.flag("play"):
            await player.play(vm.name, _socket(vm), path)
        elif cmd.flag("stop"):
            await player.stop(vm.name)
        elif cmd.flag("inject"):
            await player.inject(vm.name, _socket(vm), cmd.arg("cmd"))
        elif cmd.flag("pause"):
            player.pause(vm.name)
        elif cmd.flag("continue"):
            player.resume(vm.name)
        elif cmd.flag("step"):
            player.step(vm.name)
        else:
            rows.append([vm.name, player.get_step(vm.name)])
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), one)
    if cmd.flag("getstep"):
        return ctx.table(["name", "step"], rows)
    return None


@command(
    "vnc",
    short="list all running vnc playback/recording instances",
    long='List all running vnc playback/recording instances. See "help vnc" for more information.',
    kind="broadcast",
)
async def vnc_list(ctx: Context, cmd: Command) -> Result:
    """``name | type | time | filename`` of the namespace's recordings and playbacks."""
    return ctx.table(["name", "type", "time", "filename"], ctx.state.vnc.info(ctx.namespace))


@command(
    "clear vnc",
    short="reset VNC state",
    long='Resets the state for VNC recordings. See "help vnc" for more information.',
    kind="broadcast",
)
async def clear_vnc(ctx: Context, cmd: Command) -> Result:
    """Stop the namespace's recordings and playbacks."""
    await ctx.state.vnc.clear(ctx.namespace)
    return None


@on_destroy(30)
async def _destroy(ctx: Context, namespace: str) -> None:
    # 2.8 stops a namespace's captures and VNC before its VMs go
    await ctx.state.vnc.clear(namespace)
