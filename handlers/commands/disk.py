"""The ``disk`` command family: create, snapshot and inspect images with qemu-img.

Relative image names live in the files directory (minimega ``-filepath``), as
in 2.8. ``disk snapshot`` passes the backing format (``-F``), which newer
qemu-img requires (2.8's #1506). ``disk inject`` writes into an ext2/3/4
partition without nbd or a mount (:mod:`megabus.handlers.disks`); the image
and the sources are fetched from the cluster first, and relative sources
are taken from the files directory. Its ``options`` were ``mount(8)``'s: a
``-t`` naming a filesystem other than ext2/3/4 is refused, the rest do not
apply to a write without a mount and are ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shlex
import tempfile
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.disks import inject, parse_image, parse_pairs
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
    return await _inject(ctx, cmd)


async def _inject(ctx: Context, cmd: Command) -> Result:
    image, partition = parse_image(cmd.arg("image"))
    image = image_path(ctx, image)
    pairs = parse_pairs(cmd.items("files"))
    options = cmd.arg("options")
    if options:
        try:
            words = shlex.split(options)
        except ValueError as err:
            raise CommandError(f"[image {image}] options: {err}") from None
        for kind, value in itertools.pairwise(words):
            if kind == "-t" and value not in ("ext2", "ext3", "ext4", "auto"):
                raise CommandError(
                    f"[image {image}] {value}: only ext2/3/4 filesystems can be written"
                )
        logger.info("disk inject %s: mount options %r do not apply without a mount", image, words)
    files = ctx.state.files
    await files.fetch_served(image)
    sources: dict[str, str] = {}
    for dst, src in pairs.items():
        sources[dst] = await files.fetch_served(image_path(ctx, src))
    await inject(image, partition, sources, os.path.join(ctx.state.settings.base, "inject"))
    return None


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
