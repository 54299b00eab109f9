"""``minirouter -u FILE``: hand a config to the running daemon and wait for the outcome.

This is what the node's third cc command runs (``minirouter -u
/tmp/miniccc/files/minirouter-<vm>``): its output and exit status are the cc
response, so the node's user sees each failed line there. It waits for the
daemon's socket (a router just booting may not listen yet), sends the file,
prints every failure on stderr and exits 1 when any line failed, 2 when the
config could not be delivered at all, 0 otherwise (printing nothing, as 2.8).
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from collections.abc import Iterable

from megabus.router.router import MAX_BYTES

#: Errors that mean "no daemon listening yet": wait and try again.
_NOT_YET = {errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN}


def _connect(path: str, wait: float) -> socket.socket:
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError as err:
            sock.close()
            if err.errno not in _NOT_YET or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def update(path: str, file: str, wait: float = 30.0, timeout: float = 600.0) -> int:
    """Send ``file`` to the daemon at socket ``path``; the exit status (see the module doc)."""
    try:
        with open(file, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as err:
        print(f"minirouter: cannot read {file}: {err}", file=sys.stderr)
        return 2
    if len(data) > MAX_BYTES:
        print(f"minirouter: {file} is larger than {MAX_BYTES} bytes", file=sys.stderr)
        return 2
    try:
        sock = _connect(path, wait)
    except OSError as err:
        print(f"minirouter: no router daemon at {path}: {err.strerror or err}", file=sys.stderr)
        return 2
    with sock:
        sock.settimeout(timeout)
        try:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon stopped reading: it says why below
            return _outcome(sock.makefile("r", encoding="utf-8", errors="replace"))
        except OSError as err:
            print(f"minirouter: talking to the router daemon: {err}", file=sys.stderr)
            return 2


def _outcome(reply: Iterable[str]) -> int:
    failed = False
    for raw in reply:
        line = raw.rstrip("\n")
        if line.startswith("done "):
            parts = line.split()
            return 1 if failed or (len(parts) == 3 and parts[2] != "0") else 0
        if line.startswith("error: "):
            print(f"minirouter: {line[7:]}", file=sys.stderr)
            return 2
        failed = True
        print(line, file=sys.stderr)
    print("minirouter: the router daemon hung up before it finished", file=sys.stderr)
    return 2
