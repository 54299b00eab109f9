"""The ``disk`` command family: create, snapshot and inspect images with qemu-img.

Relative image names live in the files directory (minimega ``-filepath``), as
in 2.8. ``disk snapshot`` passes the backing format (``-F``), which newer
qemu-img requires (2.8's #1506). ``disk inject`` needs nbd and mounts, which
this node does not do yet; it answers with a clear error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.node.registry import Result, command
from megabus.handlers.vms import image_format, run_tool

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)


def image_path(ctx: Context, image: str) -> str:
    """An image name resolved against the files directory."""
    image = os.path.normpath(image)
    if os.path.isabs(image):
        return image
    return os.path.join(ctx.state.settings.files_dir, image)


def human_bytes(n: int) -> str:
    """minimega's ``humanReadableBytes``."""
    for shift, unit in ((40, "TB"), (30, "GB"), (20, "MB"), (10, "kB")):
        if n > 1 << shift:
            return f"{n / (1 << shift):.3f} {unit}"
    return f"{n}B"


@command(
    "disk <create,> <qcow2,raw> <image name> <size>",
    "disk <snapshot,> <image> [dst image]",
    "disk <inject,> <image> files <files like /path/to/src:/path/to/dst>...",
    "disk <inject,> <image> options <options> files <files like /path/to/src:/path/to/dst>...",
    "disk <info,> <image>",
    short="manipulate qcow disk images image",
)
async def disk(ctx: Context, cmd: Command) -> Result:
    """Create, snapshot or describe a disk image."""
    image = image_path(ctx, cmd.arg("image"))
    if cmd.flag("create"):
        fmt = "qcow2" if cmd.flag("qcow2") else "raw"
        await asyncio.to_thread(os.makedirs, os.path.dirname(image), exist_ok=True)
        await run_tool("qemu-img", "create", "-f", fmt, image, cmd.arg("size"))
        return None
    if cmd.flag("snapshot"):
        return await _snapshot(ctx, image, cmd.arg("dst"))
    if cmd.flag("info"):
        out = json.loads(await run_tool("qemu-img", "info", "--output=json", image))
        row = [
            image,
            str(out.get("format", "")),
            human_bytes(int(out.get("virtual-size", 0))),
            human_bytes(int(out.get("actual-size", 0))),
            str(out.get("backing-filename", "")),
        ]
        return ctx.table(["image", "format", "virtualsize", "disksize", "backingfile"], [row])
    raise CommandError("disk inject is not supported on this node yet (needs nbd)")


async def _snapshot(ctx: Context, image: str, dst: str) -> Result:
    files = ctx.state.settings.files_dir
    resp = None
    if not dst:

        def make_temp() -> str:
            os.makedirs(files, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="snapshot", dir=files)
            os.close(fd)
            return name

        try:
            dst = await asyncio.to_thread(make_temp)
        except OSError:
            raise CommandError("could not create a dst image") from None
        resp = ctx.respond(dst)
    elif not os.path.isabs(dst):
        dst = os.path.join(files, dst)
    fmt = await image_format(image)
    await run_tool("qemu-img", "create", "-f", "qcow2", "-b", image, "-F", fmt, dst)
    return resp
