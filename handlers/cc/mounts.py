"""``cc mount``: a guest's filesystem mounted on this node, listed, and removed.

Two ways, chosen by the guest:

* a **container** is mounted directly: its root as the host sees it (the
  overlay ``<inst>/fs`` with snapshot, else its filesystem) is bind-mounted
  on the path. Nothing runs, nothing is relayed; the files are the very ones
  the container uses (2.8 went through miniccc's 9p server even here);
* a guest with an **agent** (a KVM guest over virtio-serial, or any agent
  over TCP) is mounted through FUSE: a helper process per mount
  (:mod:`._fusefs`) turns each FUSE operation into an ``FsRequest`` frame,
  the node relays it over the agent's cc connection, and the agent answers
  from the guest's files (:mod:`megabus.agent.fs`). The agent's reconnects
  do not matter: each request goes to whatever connection the guest has.
  Whether the host has FUSE is found when the mount is asked for.

Each mount is recorded in ``<base>/ccmounts/`` (the path, the helper's pid),
so ``nuke`` finds them after a node was killed. ``clear cc mount`` unmounts;
an unmount that fails is logged and the mount detached (2.8 #1481: the
failure is logged, not returned).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from megabus.bus import cc_messages as wire
from megabus.bus.errors import CommandError
from megabus.bus.tasks import TaskSet

if TYPE_CHECKING:
    from megabus.handlers.cc._server import CcServer
    from megabus.handlers.model.vm import VM

logger = logging.getLogger(__name__)

FUSE_MODULE = "megabus.handlers.cc._fusefs"
RECORDS = "ccmounts"
#: Seconds the agent has to answer the first request, and the helper to mount.
PROBE_TIMEOUT = 10.0
READY_TIMEOUT = 20.0
#: Seconds a helper has to end once its mount is gone.
EXIT_TIMEOUT = 5.0

MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


# -- the kernel's side --------------------------------------------------------------------


def bind(source: str, target: str) -> None:
    """``mount --bind source target`` (blocking)."""
    if _libc.mount(source.encode(), target.encode(), None, ctypes.c_ulong(MS_BIND), None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def unmount(path: str, lazy: bool = False) -> None:
    """``umount [-l] path`` (blocking)."""
    if _libc.umount2(path.encode(), MNT_DETACH if lazy else 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape") if "\\" in text else text


def mount_points() -> list[str]:
    """Every mount point this process sees (``/proc/self/mountinfo``)."""
    try:
        with open("/proc/self/mountinfo") as fh:
            return [_unescape(line.split()[4]) for line in fh if len(line.split()) > 4]
    except OSError:
        return []


def fuse_available() -> str:
    """Why FUSE cannot be used here ("" when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "this host has no FUSE (/dev/fuse is missing: load the fuse module)"
    return ""


# -- records ----------------------------------------------------------------------------


@dataclass
class Record:
    """One mount as ``cc mount`` lists it and ``nuke`` finds it."""

    namespace: str
    uuid: str
    name: str
    path: str
    addr: str
    #: ``bind`` (a container) or ``fuse`` (an agent).
    kind: str
    #: The FUSE helper's pid.
    pid: int = 0
    #: Where the record is kept.
    file: str = ""

    def row(self) -> list[str]:
        return [self.name, self.uuid, self.addr, self.path]


def _record_file(base: str, namespace: str, uuid: str) -> str:
    return os.path.join(base, RECORDS, f"{namespace}--{uuid}.json")


def _write_record(rec: Record) -> None:
    os.makedirs(os.path.dirname(rec.file), exist_ok=True)
    tmp = rec.file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(asdict(rec), fh)
    os.replace(tmp, rec.file)


def read_records(base: str) -> list[Record]:
    """The mounts recorded under ``base`` (blocking)."""
    folder = os.path.join(base, RECORDS)
    out: list[Record] = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(folder, name)) as fh:
                    data = json.load(fh)
                rec = Record(**data)
            except (OSError, ValueError, TypeError):
                continue
            rec.file = os.path.join(folder, name)
            out.append(rec)
    return out


def _our_helper(pid: int, path: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode(errors="replace") for a in fh.read().split(b"\0")]
    except OSError:
        return False
    return FUSE_MODULE in args and path in args


def remove_record(rec: Record) -> list[str]:
    """Undo a recorded mount, the node that made it being gone (blocking; for ``nuke``)."""
    errors: list[str] = []
    if rec.path in mount_points():
        try:
            unmount(rec.path, lazy=True)
        except OSError as err:
            errors.append(f"unmount {rec.path}: {err.strerror}")
    if rec.pid and _our_helper(rec.pid, rec.path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.unlink(rec.file)
    return errors


# -- the table --------------------------------------------------------------------------


@dataclass(eq=False)
class Mount:
    """A live mount of this node."""

    record: Record
    mount_id: int = 0
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    relay: asyncio.Task[None] | None = None
    stderr: bytes = b""


@dataclass(eq=False)
class Mounts:
    """This node's ``cc mount`` table, by namespace and guest UUID."""

    base: str
    node: str
    entries: dict[tuple[str, str], Mount] = field(default_factory=dict)
    _next: int = 0
    _probes: dict[int, asyncio.Future[wire.FsReply]] = field(default_factory=dict)
    tasks: TaskSet = field(default_factory=lambda: TaskSet("ccmount"))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def rows(self, namespace: str) -> list[list[str]]:
        """``cc mount``'s rows: ``name | uuid | addr | path``."""
        found = [m.record for (ns, _), m in self.entries.items() if ns == namespace]
        return [r.row() for r in sorted(found, key=lambda r: (r.name, r.uuid))]

    def _check_new(self, vm: VM) -> None:
        mnt = self.entries.get((vm.namespace, vm.uuid))
        if mnt is not None:
            raise CommandError(f"already connected to {mnt.record.addr}")

    def _record(self, vm: VM, path: str, kind: str) -> Record:
        return Record(
            namespace=vm.namespace,
            uuid=vm.uuid,
            name=vm.name,
            path=os.path.abspath(path),
            addr=f"{self.node}:{kind}",
            kind=kind,
            file=_record_file(self.base, vm.namespace, vm.uuid),
        )

    async def mount_bind(self, vm: VM, root: str, path: str) -> None:
        """Bind-mount a container's root ``root`` on ``path``."""
        async with self.lock:
            self._check_new(vm)
            rec = self._record(vm, path, "bind")
            try:
                await asyncio.to_thread(bind, root, rec.path)
            except OSError as err:
                raise CommandError(f"mount {root} on {rec.path}: {err.strerror}") from None
            await asyncio.to_thread(_write_record, rec)
            self.entries[(vm.namespace, vm.uuid)] = Mount(rec)
            logger.info("cc mount: %s (%s) bound on %s", vm.name, root, rec.path)

    async def mount_agent(self, srv: CcServer, vm: VM, path: str) -> None:
        """Mount the filesystem ``vm``'s agent serves on ``path``, through FUSE."""
        async with self.lock:
            self._check_new(vm)
            why = await asyncio.to_thread(fuse_available)
            if why:
                raise CommandError(f"cc mount: {why}")
            if vm.uuid not in srv.clients:
                raise CommandError(f"no client for {vm.name}: the agent is not connected")
            self._next += 1
            mnt = Mount(self._record(vm, path, "fuse"), mount_id=self._next)
            await self._probe(srv, mnt)
            try:
                await self._start_helper(srv, mnt)
            except BaseException:
                await self._stop_helper(mnt)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.unlink, mnt.record.file)
                raise
            self.entries[(vm.namespace, vm.uuid)] = mnt
            logger.info("cc mount: %s mounted on %s through FUSE", vm.name, mnt.record.path)

    async def _probe(self, srv: CcServer, mnt: Mount) -> None:
        """One ``getattr /`` first: an agent that does not serve files says so in time."""
        conn = srv.clients.get(mnt.record.uuid)
        if conn is None:
            raise CommandError(f"no client for {mnt.record.name}: the agent is not connected")
        future: asyncio.Future[wire.FsReply] = asyncio.get_running_loop().create_future()
        self._probes[mnt.mount_id] = future
        try:
            await conn.send(wire.FsRequest(mount=mnt.mount_id, id=0, op="getattr", path="/"))
            reply = await asyncio.wait_for(future, PROBE_TIMEOUT)
        except (OSError, RuntimeError) as err:
            raise CommandError(f"cc mount: agent of {mnt.record.name}: {err}") from None
        except TimeoutError:
            raise CommandError(
                f"cc mount: the agent of {mnt.record.name} does not serve its files "
                f"(no answer in {PROBE_TIMEOUT:g}s; an agent older than cc mount?)"
            ) from None
        finally:
            self._probes.pop(mnt.mount_id, None)
        if reply.errno:
            raise CommandError(f"cc mount: guest /: {os.strerror(reply.errno)}")

    async def _start_helper(self, srv: CcServer, mnt: Mount) -> None:
        rec = mnt.record
        parent, child = socket.socketpair()
        try:
            mnt.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", FUSE_MODULE,
                "--fd", str(child.fileno()), "--name", f"megabus-cc:{rec.name}", rec.path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(),),
                # the mount outlives a ^C to the node only as long as the node does
                start_new_session=True,
            )  # fmt: skip
        finally:
            child.close()
        reader, mnt.writer = await asyncio.open_unix_connection(sock=parent)
        mnt.relay = self.tasks.spawn(self._relay(srv, mnt, reader), f"ccmount:{rec.name}")
        rec.pid = mnt.proc.pid
        await asyncio.to_thread(_write_record, rec)
        assert mnt.proc.stdout is not None
        assert mnt.proc.stderr is not None
        try:
            line = await asyncio.wait_for(mnt.proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            if mnt.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    mnt.proc.kill()
            err = await mnt.proc.stderr.read()
            text = err.decode(errors="replace").strip() or "the FUSE helper did not mount"
            raise CommandError(f"cc mount: {text}")
        # keep the pipes drained; the helper only talks again when something goes wrong
        self.tasks.spawn(self._drain(mnt), f"ccmount-log:{rec.name}")

    async def _drain(self, mnt: Mount) -> None:
        proc = mnt.proc
        if proc is None or proc.stderr is None:
            return
        while line := await proc.stderr.readline():
            logger.warning(
                "cc mount %s: %s", mnt.record.path, line.decode(errors="replace").strip()
            )

    async def _relay(self, srv: CcServer, mnt: Mount, reader: asyncio.StreamReader) -> None:
        """Requests of the helper to the agent (replies come back through :meth:`on_reply`)."""
        while True:
            try:
                frame = await wire.read_frame(reader)
            except (asyncio.IncompleteReadError, OSError, wire.FrameError):
                return
            if not isinstance(frame, wire.FsRequest):
                continue
            frame.mount = mnt.mount_id
            conn = srv.clients.get(mnt.record.uuid)
            code = errno.ENOTCONN
            if conn is not None:
                try:
                    await conn.send(frame)
                    continue
                except (OSError, TimeoutError, RuntimeError, wire.FrameError):
                    code = errno.EIO
            await self._to_helper(mnt, wire.FsReply(mount=mnt.mount_id, id=frame.id, errno=code))

    async def _to_helper(self, mnt: Mount, reply: wire.FsReply) -> None:
        if mnt.writer is None or mnt.writer.is_closing():
            return
        try:
            mnt.writer.write(wire.encode(reply))
            await mnt.writer.drain()
        except (OSError, RuntimeError) as err:
            logger.debug("cc mount %s: %s", mnt.record.path, err)

    async def on_reply(self, frame: wire.FsReply) -> None:
        """An agent's answer: to the probe waiting for it, or to its mount's helper."""
        probe = self._probes.get(frame.mount)
        if probe is not None and frame.id == 0:
            if not probe.done():
                probe.set_result(frame)
            return
        for mnt in self.entries.values():
            if mnt.mount_id == frame.mount:
                await self._to_helper(mnt, frame)
                return

    # -- removal ------------------------------------------------------------------------

    async def clear(self, namespace: str, target: str = "") -> None:
        """``clear cc mount [uuid or name or path]`` in ``namespace``; "" clears them all."""
        async with self.lock:
            for (ns, uuid), mnt in list(self.entries.items()):
                rec = mnt.record
                if ns != namespace or target not in ("", uuid, rec.name, rec.path):
                    continue
                await self._remove(mnt)
                del self.entries[(ns, uuid)]

    async def drop_vm(self, vm: VM) -> None:
        """The VM is flushed: its mount goes with it."""
        async with self.lock:
            mnt = self.entries.pop((vm.namespace, vm.uuid), None)
            if mnt is not None:
                await self._remove(mnt)

    async def close(self) -> None:
        """The node stops: every mount goes."""
        async with self.lock:
            entries, self.entries = list(self.entries.values()), {}
            for mnt in entries:
                await self._remove(mnt)
        await self.tasks.aclose()

    async def _remove(self, mnt: Mount) -> None:
        rec = mnt.record
        try:
            await asyncio.to_thread(unmount, rec.path)
        except OSError as err:
            # 2.8 (#1481): logged, not returned; detached so nothing stays mounted
            logger.error("unable to unmount %s: %s", rec.path, err.strerror)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(unmount, rec.path, True)
        await self._stop_helper(mnt)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.unlink, rec.file)
        logger.info("cc mount: %s unmounted from %s", rec.name, rec.path)

    async def _stop_helper(self, mnt: Mount) -> None:
        if mnt.writer is not None:
            mnt.writer.close()
        if mnt.relay is not None:
            mnt.relay.cancel()
        proc = mnt.proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
