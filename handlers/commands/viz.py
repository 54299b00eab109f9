"""``viz <filename>``: the namespace's VMs and VLANs as 2.8's graphviz dot file.

The node that gets the command asks every host of the namespace for its VMs
(``vm info``, as 2.8's ``globalVMs``) and writes the text of
:func:`megabus.handlers.model.topology.dot`. The file is created first, so a
bad path fails before any fan-out, as in 2.8.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model import topology
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context


def _os_error(path: str, err: OSError) -> CommandError:
    return CommandError(f"open {path}: {(err.strerror or str(err)).lower()}")


@command(
    "viz <filename>",
    short="visualize the current experiment as a graph",
    long="Output the current experiment topology as a graphviz readable 'dot' file.",
)
async def viz(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliDot``."""
    path = cmd.arg("filename")
    try:
        await asyncio.to_thread(_create, path)
    except OSError as err:
        raise _os_error(path, err) from None
    vms: list[topology.TopoVM] = []
    for batch in await ctx.run_line("vm info", ctx.namespace):
        for resp in batch:
            if resp.error:
                raise CommandError(resp.error)
            for item in resp.data or []:
                vms.append(topology.from_data(resp.host, item))
    vms.sort(key=lambda v: (v.host, v.id))
    text = topology.dot(vms)
    try:
        await asyncio.to_thread(_write, path, text)
    except OSError as err:
        raise _os_error(path, err) from None
    return None


def _create(path: str) -> None:
    with open(path, "w", encoding="utf-8"):
        pass


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
