"""Go's texts for OS errors, as minimega prints them.

minimega is Go: its errors read ``open foo: no such file or directory``, never
Python's ``[Errno 2] No such file or directory: 'foo'``. Scripts compare these
texts, so every command that reports an OS error uses these functions.
"""

from __future__ import annotations

import os


def go_errno_text(err: OSError) -> str:
    """An OS error the way Go prints it: lower-case, without ``[Errno n]``."""
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


def os_error_text(err: OSError, where: str) -> str:
    """Go's text for a file error (``<path>: no space left on device``).

    A failed ``write`` names no file; ``where`` (the instance directory) is
    named instead, so a full base directory says where and why.
    """
    reason = (err.strerror or str(err)).lower()
    return f"{err.filename or where}: {reason}"
