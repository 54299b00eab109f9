"""``cc mount`` on the agent side: the guest's filesystem, one operation per frame.

2.8's miniccc ran a 9p server (UFS) over the cc connection and minimega
mounted it with the kernel's 9p client. Our node exposes the files through
FUSE instead (its kernel may have no 9p, and FUSE needs nothing of the
guest's kernel), so the agent answers plain operations, path-based and
stateless: each :class:`~megabus.bus.cc_messages.FsRequest` is one system
call (``lstat``, ``listdir``, ``pread``, ``pwrite``, ``rename``...) run in a
worker thread, and its :class:`~megabus.bus.cc_messages.FsReply` carries the
result or the ``errno``. Paths are the guest's own, under :attr:`FsServer.root`
(``/`` by default, as 2.8 served).
"""

# Python 3.9 in guests: typing's spellings, asyncio.TimeoutError.
# ruff: noqa: UP006, UP035, UP041

from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import Awaitable, Callable, Dict, Set

from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

#: Largest read answered at once (FUSE asks for 128 KiB by default).
MAX_READ = 1024 * 1024

Send = Callable[[wire.Frame], Awaitable[None]]


def _stat(st: os.stat_result) -> wire.FsStat:
    return wire.FsStat(
        mode=st.st_mode,
        ino=st.st_ino,
        nlink=st.st_nlink,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size,
        rdev=getattr(st, "st_rdev", 0),
        blocks=getattr(st, "st_blocks", 0),
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
    )


class FsServer:
    """Answers the node's filesystem requests."""

    def __init__(self, root: str = "/") -> None:
        self.root = os.path.abspath(root)
        self._tasks: Set[asyncio.Task[None]] = set()

    def full(self, path: str) -> str:
        """The guest path of a request's path (never above :attr:`root`)."""
        rel = os.path.normpath("/" + path).lstrip("/")
        return os.path.join(self.root, rel) if rel else self.root

    def serve(self, req: wire.FsRequest) -> wire.FsReply:
        """Run one request (blocking)."""
        reply = wire.FsReply(mount=req.mount, id=req.id)
        handler = _OPS.get(req.op)
        if handler is None:
            reply.errno = errno.ENOSYS
            return reply
        try:
            handler(self, req, reply)
        except OSError as err:
            reply.errno = err.errno or errno.EIO
        except (ValueError, OverflowError):
            reply.errno = errno.EINVAL
        return reply

    def on_request(self, req: wire.FsRequest, send: Send) -> None:
        """Answer ``req`` in the background (the read loop goes on)."""
        task = asyncio.ensure_future(self._answer(req, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, req: wire.FsRequest, send: Send) -> None:
        reply = await asyncio.get_event_loop().run_in_executor(None, self.serve, req)
        try:
            await send(reply)
        except (OSError, asyncio.TimeoutError, RuntimeError) as err:
            logger.debug("fs reply %d: %s", req.id, err)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)


def _getattr(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    reply.stat = _stat(os.lstat(fs.full(req.path)))


def _readdir(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    reply.names = sorted(os.listdir(fs.full(req.path)))


def _readlink(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    reply.target = os.readlink(fs.full(req.path))


def _open(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    # stateless: check that the file opens as asked (and truncate if asked)
    flags = req.flags & (os.O_ACCMODE | os.O_TRUNC)
    os.close(os.open(fs.full(req.path), flags))


def _read(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    fd = os.open(fs.full(req.path), os.O_RDONLY)
    try:
        reply.data = os.pread(fd, min(req.size, MAX_READ), req.offset)
    finally:
        os.close(fd)


def _write(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    fd = os.open(fs.full(req.path), os.O_WRONLY)
    try:
        reply.size = os.pwrite(fd, req.data, req.offset)
    finally:
        os.close(fd)


def _create(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.close(os.open(fs.full(req.path), os.O_WRONLY | os.O_CREAT, req.mode & 0o7777))


def _truncate(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.truncate(fs.full(req.path), req.size)


def _unlink(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.unlink(fs.full(req.path))


def _mkdir(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.mkdir(fs.full(req.path), req.mode & 0o7777)


def _rmdir(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.rmdir(fs.full(req.path))


def _rename(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.rename(fs.full(req.path), fs.full(req.path2))


def _symlink(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    # path: the new link; path2: what it points to, as given
    os.symlink(req.path2, fs.full(req.path))


def _link(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.link(fs.full(req.path2), fs.full(req.path))


def _chmod(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.chmod(fs.full(req.path), req.mode & 0o7777)


def _chown(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    os.chown(fs.full(req.path), req.uid, req.gid, follow_symlinks=False)


def _utimens(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    if req.atime_ns < 0 or req.mtime_ns < 0:
        os.utime(fs.full(req.path))
    else:
        os.utime(fs.full(req.path), ns=(req.atime_ns, req.mtime_ns))


def _statfs(fs: FsServer, req: wire.FsRequest, reply: wire.FsReply) -> None:
    st = os.statvfs(fs.full(req.path))
    keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree")
    reply.statfs = {k: int(getattr(st, k)) for k in (*keys, "f_favail", "f_flag", "f_namemax")}


_OPS: Dict[str, Callable[[FsServer, wire.FsRequest, wire.FsReply], None]] = {
    "getattr": _getattr,
    "readdir": _readdir,
    "readlink": _readlink,
    "open": _open,
    "read": _read,
    "write": _write,
    "create": _create,
    "truncate": _truncate,
    "unlink": _unlink,
    "mkdir": _mkdir,
    "rmdir": _rmdir,
    "rename": _rename,
    "symlink": _symlink,
    "link": _link,
    "chmod": _chmod,
    "chown": _chown,
    "utimens": _utimens,
    "statfs": _statfs,
}
