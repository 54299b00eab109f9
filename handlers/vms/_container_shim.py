"""The container shim: 2.8's ``minimega CONTAINER ...`` entry point, in Python.

The node runs ``python -m megabus.handlers.vms._container_shim <spec JSON>``
with two pipes: a status pipe (shim -> node, one line per message) and a go
pipe (node -> shim). The shim makes the console pty itself.

Why a Python module and not ``unshare``/``nsenter``: 2.8's steps (mounts,
device nodes, preinit, fifos, cgroup join, chroot, capability drop, the
freeze hand-shake) must run *inside* the new namespaces and *before* init is
exec'd; ``unshare(1)`` can only exec one program, so a shell script or a
chain of tools would be needed, with worse errors. One Python process does
them in order with the same system calls as 2.8 (:mod:`container_sys`), reports
each failure as one clear line, and imports only the standard library.

Python cannot ``clone()`` with namespace flags, so the shim ``unshare``\\ s
(mount, uts, ipc, net, pid) and forks: the child is pid 1 of the new pid
namespace and becomes the container; the parent, the *monitor*
(:mod:`container_monitor`), reports the child's host pid (``pid N``) and the
console's TCP port (``console N``), then serves the console and the freeze
hand-shake, waits for the child and exits with its status. The monitor runs
in its own session and holds nothing of the node's, so a node killed with
SIGKILL leaves its containers running for ``-recover``. The child:

1. sets the hostname;
2. makes ``/`` a recursive slave and bind-mounts the filesystem onto itself;
3. mounts proc, a tmpfs ``/dev``, ``/dev/shm``, a new devpts and read-only sysfs;
4. binds the volumes;
5. makes null, zero, full, tty, random, urandom, the ptmx link and
   ``/dev/console`` (our console pty; 2.8 binds the host's ``/dev/console``);
6. runs preinit (as root, before isolation);
7. links ``/dev/fd`` and ``/dev/std*``;
8. makes ``/proc/sys``, ``/proc/sysrq-trigger``, ``/proc/irq``, ``/proc/bus``
   read-only (paths this kernel lacks are skipped);
9. binds the uuid file over DMI's ``product_uuid`` (a warning where there is no DMI);
10. binds the fifos under ``/dev/fifos``;
11. masks ``/proc/kcore`` (if present);
12. joins the cgroups the node prepared (limits are set by the node);
13. chroots and drops capabilities to 2.8's set;
14. says ``ready`` and blocks on the monitor's hold pipe: the node freezes
    it, then says go; the monitor closes the pipe and the read returns once
    the container is thawed;
15. execs init, with ``MEGABUS_UUID`` as its only environment variable
    (2.8 passes none; the agent needs the UUID where there is no DMI).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from megabus.handlers.vms import _container_sys as sc
from megabus.handlers.vms._container_console import Console
from megabus.handlers.vms._container_monitor import Monitor

#: 2.8's DEFAULT_CAPS: what a full-system container needs and nothing more.
DEFAULT_CAPS = sum(
    1 << n
    for n in (
        0,  # CHOWN
        1,  # DAC_OVERRIDE
        2,  # DAC_READ_SEARCH
        3,  # FOWNER
        4,  # FSETID
        5,  # KILL
        6,  # SETGID
        7,  # SETUID
        8,  # SETPCAP
        10,  # NET_BIND_SERVICE
        12,  # NET_ADMIN
        13,  # NET_RAW
        18,  # SYS_CHROOT
        27,  # MKNOD
        29,  # AUDIT_WRITE
        30,  # AUDIT_CONTROL
        31,  # SETFCAP
    )
)

#: (name, major, minor); all character devices, mode 0666.
DEVICES = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("tty", 5, 0),
    ("random", 1, 8),
    ("urandom", 1, 9),
]
LINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
]
READ_ONLY = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]
MASKED = ["/proc/kcore"]
UUID_LINK = "/sys/devices/virtual/dmi/id/product_uuid"
NAMESPACES = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET | sc.CLONE_NEWPID


@dataclass
class Spec:
    """What the node tells the shim (one JSON argument)."""

    id: int
    instance: str
    fs: str
    uuid: str
    uuid_file: str
    init: list[str]
    status_fd: int
    go_fd: int
    hostname: str = ""
    fifos: int = 0
    preinit: str = ""
    #: ``[source, target]`` pairs; targets are paths inside the container.
    volumes: list[list[str]] = field(default_factory=list)
    #: cgroup directories to join (the node made them and set the limits).
    cgroups: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


class SetupError(Exception):
    """A step failed; the text names the step as 2.8's logs do."""


def _inside(fs: str, path: str) -> str:
    return os.path.join(fs, path.lstrip("/"))


def _mkdir_mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    os.makedirs(target, 0o755, exist_ok=True)
    sc.mount(source, target, fstype, flags, data)


def _touch(path: str) -> None:
    with open(path, "a"):
        pass


def set_hostname(hostname: str) -> None:
    if hostname:
        socket.sethostname(hostname)


def setup_root(fs: str) -> None:
    sc.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC)
    sc.mount(fs, fs, "bind", sc.MS_BIND | sc.MS_REC)


def mount_defaults(fs: str) -> None:
    _mkdir_mount("proc", _inside(fs, "proc"), "proc", sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV)
    dev = _inside(fs, "dev")
    _mkdir_mount("tmpfs", dev, "tmpfs", sc.MS_NOEXEC | sc.MS_STRICTATIME, "mode=755")
    _mkdir_mount(
        "tmpfs",
        os.path.join(dev, "shm"),
        "tmpfs",
        sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV,
        "mode=1777,size=65536k",
    )
    _mkdir_mount(
        "pts",
        os.path.join(dev, "pts"),
        "devpts",
        sc.MS_NOEXEC | sc.MS_NOSUID,
        "newinstance,ptmxmode=666,gid=5,mode=620",
    )
    _mkdir_mount(
        "sysfs",
        _inside(fs, "sys"),
        "sysfs",
        sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_RDONLY,
    )


def mount_volumes(fs: str, volumes: list[list[str]]) -> None:
    for source, target in volumes:
        _mkdir_mount(source, _inside(fs, target), None, sc.MS_BIND)


def make_devices(fs: str) -> None:
    for name, major, minor in DEVICES:
        path = _inside(fs, f"dev/{name}")
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod applies the umask


def make_ptmx(fs: str) -> None:
    ptmx = _inside(fs, "dev/ptmx")
    if os.path.lexists(ptmx):
        os.unlink(ptmx)
    os.symlink("pts/ptmx", ptmx)
    if os.isatty(0):
        console = _inside(fs, "dev/console")
        _touch(console)
        sc.mount(os.ttyname(0), console, None, sc.MS_BIND)


def run_preinit(preinit: str) -> None:
    if not preinit:
        return
    try:
        proc = subprocess.run(
            [preinit],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as err:
        raise SetupError(f"containerPreinit: {err}") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise SetupError(f"containerPreinit: exit status {proc.returncode}: {out}")


def make_links(fs: str) -> None:
    for src, dst in LINKS:
        path = _inside(fs, dst)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(src, path)


def remount_read_only(fs: str) -> None:
    for rel in READ_ONLY:
        path = _inside(fs, rel)
        if not os.path.lexists(path):
            continue  # not on this kernel (no sysrq-trigger here)
        try:
            sc.mount("", path, None, sc.MS_REMOUNT | sc.MS_RDONLY)
            continue  # it was a mount point of its own
        except OSError:
            pass
        sc.mount(path, path, None, sc.MS_BIND)
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
        sc.mount(path, path, None, flags | sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV)


def bind_uuid(fs: str, uuid_file: str, log: TextIO) -> None:
    target = _inside(fs, UUID_LINK)
    try:
        sc.mount(uuid_file, target, None, sc.MS_BIND)
    except OSError as err:
        # no DMI on many hosts (and none here): 2.8 only warns too
        _say(log, "log", f"containerUUIDLink: {err}")


def bind_fifos(fs: str, instance: str, count: int) -> None:
    fifos = _inside(fs, "dev/fifos")
    os.makedirs(fifos, 0o755, exist_ok=True)
    for i in range(count):
        src = os.path.join(instance, f"fifo{i}")
        os.stat(src)
        dst = os.path.join(fifos, f"fifo{i}")
        _touch(dst)
        sc.mount(src, dst, None, sc.MS_BIND)


def mask_paths(fs: str) -> None:
    for rel in MASKED:
        path = _inside(fs, rel)
        if os.path.lexists(path):
            sc.mount("/dev/null", path, None, sc.MS_BIND)


def join_cgroups(paths: list[str]) -> None:
    for path in paths:
        # "0" is the writer itself, whatever pid namespace it is in
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")


def enter_root(fs: str) -> None:
    os.chdir(fs)
    sc.mount(fs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def _say(out: TextIO, kind: str, text: str) -> None:
    try:
        out.write(f"{kind} {' '.join(text.split())}\n")
        out.flush()
    except OSError:
        pass  # the node went away; the container still follows its steps


def setup(spec: Spec, status: TextIO) -> None:
    """Steps 1-13 (see the module docstring); raises SetupError naming the failed step."""
    fs = spec.fs
    steps: list[tuple[str, Callable[[], None]]] = [
        ("set hostname", lambda: set_hostname(spec.hostname)),
        ("containerSetupRoot", lambda: setup_root(fs)),
        ("containerMountDefaults", lambda: mount_defaults(fs)),
        ("containerMountVolumes", lambda: mount_volumes(fs, spec.volumes)),
        ("containerMknodDevices", lambda: make_devices(fs)),
        ("containerPtmx", lambda: make_ptmx(fs)),
        ("containerPreinit", lambda: run_preinit(spec.preinit)),
        ("containerSymlinks", lambda: make_links(fs)),
        ("containerRemountReadOnly", lambda: remount_read_only(fs)),
        ("containerUUIDLink", lambda: bind_uuid(fs, spec.uuid_file, status)),
        ("containerFifos", lambda: bind_fifos(fs, spec.instance, spec.fifos)),
        ("containerMaskPaths", lambda: mask_paths(fs)),
        ("containerPopulateCgroups", lambda: join_cgroups(spec.cgroups)),
        ("containerChroot", lambda: enter_root(fs)),
        ("containerSetCapabilities", lambda: sc.limit_capabilities(DEFAULT_CAPS)),
    ]
    for name, step in steps:
        try:
            step()
        except SetupError:
            raise
        except OSError as err:
            raise SetupError(f"{name}: {err}") from None


def container(spec: Spec, status: TextIO, hold_fd: int) -> None:
    """The child: pid 1 of the new namespaces. Never returns."""
    try:
        # the monitor dies only when we do, or when it is killed: take us along
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()
        if os.isatty(0):
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        setup(spec, status)
    except (SetupError, OSError) as err:
        _say(status, "error", str(err))
        os._exit(1)
    _say(status, "ready", "")
    # Frozen by the node while blocked here; the monitor's EOF arrives once thawed.
    while os.read(hold_fd, 1):
        pass
    status.close()
    os.closerange(3, 1 << 16)  # init inherits the console only
    try:
        os.execve(spec.init[0], spec.init, {"MEGABUS_UUID": spec.uuid})
    except OSError as err:
        os.write(2, f"megabus: exec {spec.init[0]}: {err.strerror}\r\n".encode())
    os._exit(1)


def main(argv: list[str]) -> int:
    """Isolate, fork the container, serve it; the exit status is the container's."""
    if len(argv) != 2:
        sys.stderr.write("usage: container_shim SPEC_JSON\n")
        return 2
    spec = Spec.from_json(argv[1])
    status = os.fdopen(spec.status_fd, "w", buffering=1)
    if not spec.init:
        _say(status, "error", "no init program")
        return 1
    console = Console(-1, os.path.join(spec.instance, "console"), f"vm {spec.id}")
    try:
        # before unshare: the console's TCP socket must be the host's
        console.bind()
        master, slave = os.openpty()
        console.master = master
        hold_r, hold_w = os.pipe()
        sc.unshare(NAMESPACES)
        pid = os.fork()
    except OSError as err:
        _say(status, "error", f"start container: {err}")
        return 1
    if pid == 0:
        for fd in (master, hold_w, spec.go_fd):
            os.close(fd)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
        container(spec, status, hold_r)
    os.close(slave)
    os.close(hold_r)
    _say(status, "pid", str(pid))
    _say(status, "console", str(console.port))
    status.close()
    # the monitor's own stdio: nothing (the node may be gone long before us)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return asyncio.run(Monitor(pid, console, spec.go_fd, hold_w).run())


if __name__ == "__main__":
    code = main(sys.argv)
    # No interpreter teardown: collecting every module's garbage took each shim
    # ~50 ms of CPU after its container was gone, so ten at once kept `vm kill
    # all` from QUIT for 400 ms (issue 16). Nothing is left to flush or close.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
