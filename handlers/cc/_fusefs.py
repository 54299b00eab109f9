"""The FUSE process of one ``cc mount`` of an agent-backed guest.

Why FUSE and a process of its own: 2.8 mounted the guest's 9p server with
the kernel's 9p client, and QEMU's virtio-9p would need the VM started with
it; many kernels (this project's CI among them) have neither ``9p`` nor
``9pnet``, while FUSE is in every distribution kernel and needs nothing of
the guest. The FUSE library (mfusepy over libfuse 3) installs its own signal
handlers and runs a thread per request, which a node's event loop must not
share, so each mount runs here, as ``python -m megabus.handlers.cc._fusefs
--fd N --name NAME MOUNTPOINT``.

Every FUSE operation becomes an :class:`~megabus.bus.cc_messages.FsRequest`
written on the socket the node passed (fd ``N``); the node relays it to the
guest's agent and the agent's :class:`~megabus.bus.cc_messages.FsReply`
back. Once mounted the process prints ``ready``. When the node goes away
(the socket ends) every pending call fails with ``ENOTCONN`` and the mount
is detached, so the process ends and leaves no dead mount behind.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import sys
import threading
from typing import Any

from megabus.bus import cc_messages as wire

logger = logging.getLogger("megabus.ccmount")

#: Seconds one operation may wait for the guest before it fails with EIO.
CALL_TIMEOUT = 30.0
MNT_DETACH = 2
#: utimens with UTIME_NOW arrives as a time in the first seconds of 1970.
_NOW_BELOW_NS = 2 * 10**9


class FsError(OSError):
    """An operation's errno (mfusepy turns any OSError into ``-errno``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))


class Link:
    """Request/reply over the node's socket, from many FUSE threads at once."""

    def __init__(self, sock: socket.socket, mountpoint: str) -> None:
        self.sock = sock
        self.mountpoint = mountpoint
        self._lock = threading.Lock()
        self._ids = 0
        self._waiting: dict[int, tuple[threading.Event, list[wire.FsReply]]] = {}
        self.closed = False

    def call(self, op: str, path: str, **kw: Any) -> wire.FsReply:
        with self._lock:
            if self.closed:
                raise FsError(errno.ENOTCONN)
            self._ids += 1
            req_id = self._ids
            done = threading.Event()
            slot: list[wire.FsReply] = []
            self._waiting[req_id] = (done, slot)
            try:
                self.sock.sendall(
                    wire.encode(wire.FsRequest(mount=0, id=req_id, op=op, path=path, **kw))
                )
            except OSError:
                self._waiting.pop(req_id, None)
                raise FsError(errno.ENOTCONN) from None
        if not done.wait(CALL_TIMEOUT):
            self._waiting.pop(req_id, None)
            raise FsError(errno.EIO)
        if not slot:
            raise FsError(errno.ENOTCONN)
        reply = slot[0]
        if reply.errno:
            raise FsError(reply.errno)
        return reply

    def _read(self, size: int) -> bytes:
        buf = b""
        while len(buf) < size:
            chunk = self.sock.recv(size - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read_loop(self) -> None:
        """Deliver replies until the node hangs up; then let the mount go."""
        try:
            while True:
                length = wire.frame_length(self._read(wire.HEADER_SIZE))
                frame = wire.decode(self._read(length))
                if isinstance(frame, wire.FsReply):
                    waiter = self._waiting.pop(frame.id, None)
                    if waiter is not None:
                        waiter[1].append(frame)
                        waiter[0].set()
        except (EOFError, OSError, wire.FrameError) as err:
            logger.warning("node connection ended: %s", str(err) or type(err).__name__)
        with self._lock:
            self.closed = True
            waiting, self._waiting = self._waiting, {}
        for done, _slot in waiting.values():
            done.set()
        _detach(self.mountpoint)


def _detach(path: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.umount2(path.encode(), MNT_DETACH) != 0:
        logger.info("detach %s: %s", path, os.strerror(ctypes.get_errno()))


def _attrs(st: wire.FsStat) -> dict[str, int]:
    return {
        "st_mode": st.mode,
        "st_ino": st.ino,
        "st_nlink": st.nlink,
        "st_uid": st.uid,
        "st_gid": st.gid,
        "st_size": st.size,
        "st_rdev": st.rdev,
        "st_blocks": st.blocks,
        "st_atime": st.atime_ns,
        "st_mtime": st.mtime_ns,
        "st_ctime": st.ctime_ns,
    }


class GuestFs:
    """mfusepy's operations, each one request to the guest (times in nanoseconds)."""

    use_ns = True

    def __init__(self, link: Link) -> None:
        self.guest = link

    def init(self, path: str) -> None:
        print("ready", flush=True)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        reply = self.guest.call("getattr", path)
        if reply.stat is None:
            raise FsError(errno.EIO)
        return _attrs(reply.stat)

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self.guest.call("readdir", path).names]

    def readlink(self, path: str) -> str:
        return self.guest.call("readlink", path).target

    def open(self, path: str, flags: int) -> int:
        self.guest.call("open", path, flags=flags)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.guest.call("read", path, size=size, offset=offset).data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return self.guest.call("write", path, data=bytes(data), offset=offset).size

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self.guest.call("create", path, mode=mode)
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self.guest.call("truncate", path, size=length)
        return 0

    def unlink(self, path: str) -> int:
        self.guest.call("unlink", path)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self.guest.call("mkdir", path, mode=mode)
        return 0

    def rmdir(self, path: str) -> int:
        self.guest.call("rmdir", path)
        return 0

    def rename(self, old: str, new: str) -> int:
        self.guest.call("rename", old, path2=new)
        return 0

    def symlink(self, target: str, source: str) -> int:
        # mfusepy: make `target`, a link pointing at `source`
        self.guest.call("symlink", target, path2=source)
        return 0

    def link(self, target: str, source: str) -> int:
        self.guest.call("link", target, path2=source)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self.guest.call("chmod", path, mode=mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self.guest.call("chown", path, uid=uid, gid=gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None or min(times) < _NOW_BELOW_NS:
            self.guest.call("utimens", path)
        else:
            self.guest.call("utimens", path, atime_ns=int(times[0]), mtime_ns=int(times[1]))
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return dict(self.guest.call("statfs", path).statfs)

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megabus cc mount helper")
    parser.add_argument("--fd", type=int, required=True, help="socket to the node")
    parser.add_argument("--name", default="megabus", help="the mount's source name")
    parser.add_argument("mountpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="ccmount: %(message)s")
    # prefer libfuse 3 where libfuse 2 is installed too (mfusepy tries "fuse" first)
    if ctypes.util.find_library("fuse3"):
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except (ImportError, OSError) as err:
        print(f"no FUSE library: {err} (install fuse3 and the mfusepy package)", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=args.fd)
    link = Link(sock, args.mountpoint)
    threading.Thread(target=link.read_loop, name="node", daemon=True).start()
    try:
        mfusepy.FUSE(
            GuestFs(link), args.mountpoint, foreground=True, fsname=args.name, subtype="megabus"
        )
    except (RuntimeError, OSError) as err:
        print(f"mount failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
