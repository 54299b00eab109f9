"""File paths: the bounds of one a user types, and the text of a node's small state files.

The bounds (``file``, ``vm config disk``/``cdrom``...):

A path goes to the kernel sooner or later, which takes at most ``PATH_MAX``
bytes and no NUL; checked here first, the user reads what is wrong with the
path itself instead of ``internal error: embedded null byte`` or whatever a
later ``open`` or glob makes of it.
"""

from __future__ import annotations

from megabus.bus.errors import CommandError

#: Linux's ``PATH_MAX`` counts the terminating NUL.
PATH_MAX = 4096
#: The longest path accepted, in bytes (UTF-8).
MAX_PATH_BYTES = PATH_MAX - 1


def bounded_path(path: str) -> str:
    """``path`` unchanged when the kernel could take it.

    Raises:
        CommandError: it holds a NUL byte or is longer than :data:`MAX_PATH_BYTES`.
    """
    if "\x00" in path:
        raise CommandError(f"invalid path {path[:60]!r}: contains a NUL byte")
    size = len(path.encode(errors="surrogateescape"))
    if size > MAX_PATH_BYTES:
        raise CommandError(f"path too long: {size} bytes (at most {MAX_PATH_BYTES})")
    return path


__all__ = ["MAX_PATH_BYTES", "PATH_MAX", "bounded_path"]


def read_text(path: str) -> str:
    """A small state file's text (a pid file, an instance's ``console_port``), stripped;
    ``""`` when it is missing or unreadable."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
