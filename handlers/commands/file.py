"""The ``file`` command family on one node: list, delete, get, stream and status.

Paths are rooted in the node's files directory (2.8's ``-filepath``): a path
is cleaned as if it began with ``/``, so ``..`` cannot climb out of it, and
globs are expanded as Go's ``filepath.Glob`` does (dot files included).
``file list`` prints 2.8's ``dir | name | size | modified`` with names
relative to the files directory; ``file delete`` removes recursively.

Transfers between nodes are a later issue. Until then ``file get`` answers
as 2.8 does in a mesh of one node (it returns at once, #1498) and ``file
status`` lists no transfers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import glob
import logging
import os
import shutil
import stat
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.paths import bounded_path
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: ``file stream`` sends the file in parts of this size (2.8's ``PART_SIZE``).
PART_SIZE = 10 * 1024 * 1024

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
	file delete *.qcow2"""


def clean_path(root: str, path: str) -> str:
    """``path`` rooted in ``root``; ``..`` never leaves it (2.8's ``cleanPath``).

    Raises:
        CommandError: the path has a NUL byte or is longer than the kernel takes.
    """
    joined = os.path.join(root, os.path.normpath("/" + path).lstrip("/")).rstrip("/") or "/"
    return bounded_path(joined)


def rfc3339(ts: float) -> str:
    """Go's ``time.RFC3339`` of a local timestamp (``Z`` for UTC)."""
    when = datetime.datetime.fromtimestamp(int(ts)).astimezone()
    offset = when.utcoffset() or datetime.timedelta(0)
    if not offset:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hours:02d}:{mins:02d}"


def _row(root: str, path: str, st: os.stat_result) -> list[str]:
    rel = os.path.relpath(path, root)
    is_dir = stat.S_ISDIR(st.st_mode)
    return ["<dir>" if is_dir else "", rel, str(st.st_size), rfc3339(st.st_mtime)]


def list_files(root: str, path: str, recursive: bool) -> list[list[str]]:
    """2.8's ``IOMeshage.List``: a file gives itself, a directory its children
    (or, recursive, every file below it)."""
    rows: list[list[str]] = []
    for match in sorted(glob.glob(clean_path(root, path), include_hidden=True)):
        st = os.stat(match)
        if not stat.S_ISDIR(st.st_mode):
            rows.append(_row(root, match, st))
        elif not recursive:
            for entry in sorted(os.scandir(match), key=lambda e: e.name):
                rows.append(_row(root, entry.path, entry.stat(follow_symlinks=False)))
        else:
            for dirpath, _dirs, files in os.walk(match):
                for name in sorted(files):
                    full = os.path.join(dirpath, name)
                    rows.append(_row(root, full, os.stat(full)))
    return rows


def delete_files(root: str, path: str) -> None:
    """2.8's ``IOMeshage.Delete``: recursive, globs; the root itself is only emptied."""
    root_clean = os.path.normpath(root)
    for match in glob.glob(clean_path(root, path), include_hidden=True):
        targets = (
            [os.path.join(match, n) for n in os.listdir(match)]
            if os.path.normpath(match) == root_clean
            else [match]
        )
        for target in targets:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)


def _read_parts(path: str) -> list[bytes]:
    parts: list[bytes] = []
    with open(path, "rb") as f:
        while chunk := f.read(PART_SIZE):
            parts.append(chunk)
    return parts


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
    root = ctx.state.settings.files_dir
    name = cmd.arg("file")
    if cmd.flag("list"):
        try:
            rows = await asyncio.to_thread(
                list_files, root, cmd.arg("path") or "/", cmd.flag("recursive")
            )
        except OSError as err:
            raise CommandError(_os_error(err)) from None
        return ctx.table(["dir", "name", "size", "modified"], rows)
    if cmd.flag("delete"):
        try:
            await asyncio.to_thread(delete_files, root, name)
        except OSError as err:
            raise CommandError(_os_error(err)) from None
        return None
    if cmd.flag("stream"):
        path = clean_path(root, name)
        try:
            parts = await asyncio.to_thread(_read_parts, path)
        except OSError as err:
            raise CommandError(_os_error(err)) from None
        responses = []
        for part in parts:
            resp = ctx.respond()
            resp.data = base64.b64encode(part).decode()
            responses.append(resp)
        return responses or None
    if cmd.flag("status"):
        return ctx.table(["filename", "tempdir", "completed", "queued"], [])
    # file get: in a mesh of one node 2.8 returns at once (#1498)
    logger.debug("file get %s: single node, nothing to transfer", name)
    return None


def _os_error(err: OSError) -> str:
    """Go's ``*PathError`` text: ``op path: reason``."""
    reason = (err.strerror or str(err)).lower()
    return f"{err.filename}: {reason}" if err.filename else reason
