"""A container's cgroups: limits, freeze/thaw, emptying and removal, on v1 or v2.

Which one is detected per host: cgroup v1 when a ``freezer`` hierarchy is
mounted under the root (as here), else the unified v2 hierarchy.

* v1 (2.8's layout): ``<root>/{freezer,memory,devices,cpu}/megabus/<node>/<id>``
  with the device whitelist, a CFS quota of ``vcpus`` seconds per second and
  ``memory.limit_in_bytes``; stop/start through ``freezer.state``.
* v2: ``<root>/megabus/<node>/<id>`` with ``cpu.max`` and ``memory.max`` (when
  those controllers can be enabled), ``cgroup.freeze`` and ``cgroup.kill``. A
  device whitelist needs a BPF program in v2; it is not set.

``<node>`` comes from the node's base directory, so two nodes on one host
never share a VM's cgroup (2.8 used ``minimega/<id>``: one daemon per host).

Everything here blocks (small writes to cgroupfs); callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
from dataclasses import dataclass

from megabus.bus.errors import MegabusError

logger = logging.getLogger(__name__)

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("freezer", "memory", "devices", "cpu")
#: 2.8's device whitelist (``devices.allow`` lines).
DEVICES_ALLOW = (
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c *:* m",  # mknod any character device
    "b *:* m",  # mknod any block device
    "c 5:1 rwm",  # /dev/console
    "c 4:0 rwm",  # /dev/tty0
    "c 4:1 rwm",  # /dev/tty1
    "c 136:* rwm",  # pts
    "c 5:2 rwm",  # ptmx
    "c 10:200 rwm",  # tun
)
#: CFS period: one second, so a container may burst (2.8's choice).
CFS_PERIOD_US = 1_000_000
V2_PERIOD_US = 100_000


class CgroupError(MegabusError):
    """The host's cgroups cannot hold a container; the text says why."""


def node_key(base: str) -> str:
    """The per-node folder name: a short hash of the node's base directory."""
    return hashlib.sha256(os.path.abspath(base).encode()).hexdigest()[:12]


def detect(root: str = ROOT) -> int:
    """1 or 2: which cgroup version the container controllers live in."""
    if os.path.exists(os.path.join(root, "freezer", "cgroup.procs")):
        return 1
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return 2
    raise CgroupError(f"no freezer cgroup (v1) or cgroup v2 hierarchy under {root}")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


@dataclass
class Cgroup:
    """The cgroups of one container (one directory per v1 controller, or one v2 directory)."""

    version: int
    #: v1: ``controller -> directory``; v2: ``{"": directory}``.
    dirs: dict[str, str]

    @classmethod
    def for_vm(cls, base: str, vm_id: int, root: str = ROOT) -> Cgroup:
        version = detect(root)
        key = node_key(base)
        if version == 1:
            dirs = {c: os.path.join(root, c, "megabus", key, str(vm_id)) for c in V1_CONTROLLERS}
        else:
            dirs = {"": os.path.join(root, "megabus", key, str(vm_id))}
        return cls(version, dirs)

    @property
    def paths(self) -> list[str]:
        """The directories a container process joins."""
        return list(self.dirs.values())

    @property
    def main(self) -> str:
        """The directory that lists the container's processes (v1: the freezer's)."""
        return self.dirs["freezer"] if self.version == 1 else self.dirs[""]

    # -- set-up ----------------------------------------------------------------------

    def create(self, vcpus: int, memory_mb: int) -> None:
        """Make the directories and set the limits (an emptied stale one is reused)."""
        try:
            if self.version == 1:
                self._create_v1(vcpus, memory_mb)
            else:
                self._create_v2(vcpus, memory_mb)
        except OSError as err:
            raise CgroupError(f"cgroups: {err}") from None

    def _create_v1(self, vcpus: int, memory_mb: int) -> None:
        for ctrl, leaf in self.dirs.items():
            node_dir = os.path.dirname(leaf)
            for d in (os.path.dirname(node_dir), node_dir):
                os.makedirs(d, 0o755, exist_ok=True)
                # inherit cpusets; use_hierarchy is fixed to 1 on new kernels
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "cgroup.clone_children"), "1")
                if ctrl == "memory":
                    with contextlib.suppress(OSError):
                        _write(os.path.join(d, "memory.use_hierarchy"), "1")
            os.makedirs(leaf, 0o755, exist_ok=True)
        devices = self.dirs["devices"]
        _write(os.path.join(devices, "devices.deny"), "a")
        for rule in DEVICES_ALLOW:
            _write(os.path.join(devices, "devices.allow"), rule)
        cpu = self.dirs["cpu"]
        _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
        _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(vcpus * CFS_PERIOD_US))
        _write(os.path.join(self.dirs["memory"], "memory.limit_in_bytes"), f"{memory_mb}M")

    def _create_v2(self, vcpus: int, memory_mb: int) -> None:
        leaf = self.dirs[""]
        node_dir = os.path.dirname(leaf)
        top = os.path.dirname(node_dir)
        root = os.path.dirname(top)
        os.makedirs(leaf, 0o755, exist_ok=True)
        for d in (root, top, node_dir):
            for ctrl in ("cpu", "memory"):
                try:
                    _write(os.path.join(d, "cgroup.subtree_control"), f"+{ctrl}")
                except OSError as err:
                    logger.debug("cgroup v2: cannot enable %s in %s: %s", ctrl, d, err)
        if os.path.exists(os.path.join(leaf, "cpu.max")):
            _write(os.path.join(leaf, "cpu.max"), f"{vcpus * V2_PERIOD_US} {V2_PERIOD_US}")
        else:
            logger.warning("cgroup v2: no cpu controller; vcpus limit not applied")
        if os.path.exists(os.path.join(leaf, "memory.max")):
            _write(os.path.join(leaf, "memory.max"), str(memory_mb * 1024 * 1024))
        else:
            logger.warning("cgroup v2: no memory controller; memory limit not applied")

    # -- freezer ---------------------------------------------------------------------

    def freeze(self) -> None:
        """Ask the kernel to freeze every process (see :meth:`frozen`)."""
        if self.version == 1:
            _write(os.path.join(self.main, "freezer.state"), "FROZEN")
        else:
            _write(os.path.join(self.main, "cgroup.freeze"), "1")

    def thaw(self) -> None:
        """Let every process run again."""
        if self.version == 1:
            _write(os.path.join(self.main, "freezer.state"), "THAWED")
        else:
            _write(os.path.join(self.main, "cgroup.freeze"), "0")

    def frozen(self) -> bool:
        """Whether the freeze has completed (v1 passes through FREEZING first)."""
        if self.version == 1:
            return _read(os.path.join(self.main, "freezer.state")).strip() == "FROZEN"
        for line in _read(os.path.join(self.main, "cgroup.events")).splitlines():
            key, _, value = line.partition(" ")
            if key == "frozen":
                return value.strip() == "1"
        return False

    # -- processes -------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Host pids of the container's processes (none when the cgroup is gone)."""
        try:
            text = _read(os.path.join(self.main, "cgroup.procs"))
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split()]

    def kill_all(self) -> None:
        """SIGKILL every process (what is left after pid 1 dies, or a stray)."""
        kill_file = os.path.join(self.main, "cgroup.kill")
        if self.version == 2 and os.path.exists(kill_file):
            _write(kill_file, "1")
            return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Remove the directories (only empty cgroups can go); errors are logged."""
        for d in self.paths:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("cannot remove cgroup %s: %s", d, err)
            else:
                # the node's folder goes with its last container; EBUSY means others remain
                try:
                    os.rmdir(os.path.dirname(d))
                except OSError as err:
                    if err.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                        logger.debug("cgroup %s: %s", os.path.dirname(d), err)
