"""The ``file`` command family: list, delete, get, stream and status.

Paths are rooted in the node's files directory (2.8's ``-filepath``); the
files engine (:mod:`megabus.handlers.files`) does the work. ``file list``
prints 2.8's ``dir | name | size | modified`` with names relative to the
files directory, plus ``hash`` with ``-hashfiles``; ``file get`` queues the
transfers and returns (2.8's non-blocking get); ``file status`` prints
``filename | tempdir | completed | queued``; ``file stream`` fetches the file
first, then sends it in parts of 10 MiB, one batch each (never the whole
file in memory).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.files import PART_SIZE, Files, delete_files, list_files, relative_name
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """file allows you to transfer and manage files served by minimega in the
directory set by the -filepath flag (default is 'base'/files).

To list files currently being served, issue the list command with a directory
relative to the served directory:

	file list /foo

Issuing "file list /" will list the contents of the served directory.

Files can be deleted with the delete command:

	file delete /foo

If a directory is given, the directory will be recursively deleted.

You can also supply globs (wildcards) with the * operator. For example:

	file get *.qcow2
	file delete *.qcow2

With -hashfiles, "file list" adds a hash column: murmur3-64 of the file's
bytes (seed 0, the first 64 bits of murmur3 x64-128, in hex), as minimega
2.8 printed it."""


@command(
    "file <list,>",
    "file <list,> <path> [recursive,]",
    "file <get,> <file>",
    "file <stream,> <file>",
    "file <delete,> <file>",
    "file <status,>",
    short="work with files served by minimega",
    long=_LONG,
)
async def file_cmd(ctx: Context, cmd: Command) -> Result:
    """List, delete, stream or fetch files of the files directory."""
    files = ctx.state.files
    root = files.root
    name = cmd.arg("file")
    if cmd.flag("list"):
        try:
            rows = await asyncio.to_thread(
                list_files, root, cmd.arg("path") or "/", cmd.flag("recursive")
            )
        except OSError as err:
            raise CommandError(_os_error(err)) from None
        header = ["dir", "name", "size", "modified"]
        if files.hash_files:
            header.append("hash")
            rows = await asyncio.to_thread(_with_hashes, files, rows)
        return ctx.table(header, rows)
    if cmd.flag("delete"):
        try:
            await asyncio.to_thread(delete_files, root, name)
        except OSError as err:
            raise CommandError(_os_error(err)) from None
        return None
    if cmd.flag("stream"):
        return await _stream(ctx, name)
    if cmd.flag("status"):
        return ctx.table(["filename", "tempdir", "completed", "queued"], files.status())
    await files.get(name)
    return None


def _with_hashes(files: Files, rows: list[list[str]]) -> list[list[str]]:
    """The rows with the hash column (blocking: each hash is checked against a stat)."""
    return [[*r, "" if r[0] else files.hash_of(r[1])] for r in rows]


async def _stream(ctx: Context, name: str) -> Result:
    """Each part of the file as one batch of one response (2.8's ``Data=[]byte``)."""
    rel = relative_name(ctx.state.files.root, name, verb="stream")
    path = await ctx.state.files.fetch(rel)
    try:
        f = await asyncio.to_thread(open, path, "rb")
    except OSError as err:
        raise CommandError(_os_error(err)) from None
    sent = False
    try:
        while part := await asyncio.to_thread(f.read, PART_SIZE):
            resp = ctx.respond()
            resp.data = base64.b64encode(part).decode()
            await ctx.emit([resp])
            sent = True
    except OSError as err:
        raise CommandError(_os_error(err)) from None
    finally:
        await asyncio.to_thread(f.close)
    logger.debug("file stream %s: done", rel)
    return None if sent else ctx.respond()


def _os_error(err: OSError) -> str:
    """Go's ``*PathError`` text: ``op path: reason``."""
    reason = (err.strerror or str(err)).lower()
    return f"{err.filename}: {reason}" if err.filename else reason
