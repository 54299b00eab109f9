"""Paths of the files directory: cleaning, listing and deleting as 2.8 does.

A path is cleaned as if it began with ``/`` (2.8's ``cleanPath``), so ``..``
cannot climb out of the root; a name that the bus or a user hands over is
also refused when it *tries* to (:func:`relative_name`), so that
``file get ../../etc/passwd`` says so instead of quietly fetching
``etc/passwd``. Globs expand as Go's ``filepath.Glob`` does (dot files
included).
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import stat
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.model.paths import bounded_path

#: Marks the temporary directories of transfers (2.8's ``transfer_XXXX``).
TRANSFER_PREFIX = "transfer_"


def clean_path(root: str, path: str) -> str:
    """``path`` rooted in ``root``; ``..`` never leaves it (2.8's ``cleanPath``).

    Raises:
        CommandError: the path has a NUL byte or is longer than the kernel takes.
    """
    joined = os.path.join(root, os.path.normpath("/" + path).lstrip("/")).rstrip("/") or "/"
    return bounded_path(joined)


def relative_name(root: str, path: str, *, verb: str = "get") -> str:
    """The name of ``path`` relative to ``root``, for a transfer.

    An absolute path is taken as it is when it lies under ``root`` and as
    rooted in ``root`` otherwise (2.8); a relative one must not climb out.

    Raises:
        CommandError: ``<verb> <path>: ...`` for a path that leaves the files
            directory, a NUL byte or an over-long path.
    """
    bounded_path(path)
    root_n = os.path.normpath(root)
    if os.path.isabs(path):
        norm = os.path.normpath(path)
        if norm == root_n or norm.startswith(root_n + os.sep):
            rel = os.path.relpath(norm, root_n)
            return "" if rel == "." else rel
        rel = norm.lstrip("/")
    else:
        rel = os.path.normpath(path)
    if rel == ".":
        return ""
    if rel == ".." or rel.startswith("../"):
        raise CommandError(f"{verb} {path}: outside of the files directory")
    return rel


def under(root: str, path: str) -> bool:
    """``path`` (absolute) names something below ``root``, by its text alone."""
    return os.path.normpath(path).startswith(os.path.normpath(root) + os.sep)


def is_temporary(rel: str) -> bool:
    """A path inside a transfer's temporary directory (never served or hashed)."""
    return any(part.startswith(TRANSFER_PREFIX) for part in rel.split(os.sep))


def inside(root: str, path: str) -> bool:
    """``path`` resolves (symlinks followed) to a place under ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def servable(root: str, path: str) -> bool:
    """A regular file below ``root`` that is no symbolic link (blocking)."""
    return not os.path.islink(path) and inside(root, path)


def make_tree(root: str, dirs: list[tuple[str, int]], links: list[tuple[str, str]]) -> None:
    """Create ``dirs`` (name, mode) and ``links`` (name, target) below ``root`` (blocking).

    What exists is left alone; nothing is made through a directory that
    resolves outside ``root``.
    """
    for name, mode in sorted(dirs, key=lambda d: d[0].count("/")):
        path = os.path.join(root, name)
        if not inside(root, os.path.dirname(path)) or os.path.lexists(path):
            continue
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode & 0o7777)
    for name, target in links:
        path = os.path.join(root, name)
        parent = os.path.dirname(path)
        if not inside(root, parent) or os.path.lexists(path):
            continue
        os.makedirs(parent, exist_ok=True)
        os.symlink(target, path)


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
    (or, recursive, every file below it): rows of ``dir, name, size, modified``."""
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


@dataclass
class Tree:
    """What a path names below a root, relative to it: directories (so that empty
    ones travel too), symbolic links (kept as links, never followed) and files."""

    dirs: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def matching_tree(root: str, path: str) -> Tree:
    """Everything ``path`` (a file, directory or glob) names below ``root`` (blocking).

    Transfers' temporary files are left out, and so is anything whose
    directory resolves outside ``root``.
    """
    tree = Tree()

    def add(full: str) -> None:
        rel = os.path.relpath(full, root)
        if rel == "." or is_temporary(rel) or not inside(root, os.path.dirname(full)):
            return
        if os.path.islink(full):
            tree.links.append(rel)
        elif os.path.isdir(full):
            tree.dirs.append(rel)
        elif os.path.isfile(full):
            tree.files.append(rel)

    for match in sorted(glob.glob(clean_path(root, path), include_hidden=True)):
        add(match)
        if os.path.isdir(match) and not os.path.islink(match):
            for dirpath, dirs, files in os.walk(match):
                dirs[:] = sorted(d for d in dirs if not d.startswith(TRANSFER_PREFIX))
                for name in [*dirs, *sorted(files)]:
                    add(os.path.join(dirpath, name))
    return tree


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
