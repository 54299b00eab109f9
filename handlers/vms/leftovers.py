"""What a node's VMs leave on the host, found from its base directory (for ``nuke``).

QEMU, container monitors and containers outlive a node killed with SIGKILL
(on purpose: ``-recover`` adopts them). ``nuke`` reads the base directory to
find them, as 2.8's ``nukeWalker`` read its pid files, but a pid is only
signalled when the process proves it is ours: a QEMU whose ``-pidfile`` is
the instance's ``qemu.pid``, a monitor running the shim for that instance,
a container process inside this node's cgroups (named after the base
directory). A ``/var/run/netns`` link is ours when it points at one of our
containers; a tap when an instance recorded it. Nothing else on the host is
touched, whatever its name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from megabus.handlers.vms import _container_net as container_net
from megabus.handlers.vms._container import SHIM_MODULE
from megabus.handlers.vms._container_cgroup import Cgroup, CgroupError

logger = logging.getLogger(__name__)

#: Seconds to wait for killed processes to be gone.
KILL_WAIT = 10.0


def cmdline(pid: int) -> list[str]:
    """A process's argv ([] when it is gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def read_pid(path: str) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class Leftovers:
    """This node's VM leftovers on the host."""

    base: str
    #: Instance directories (``<base>/<id>``) by VM ID.
    instances: dict[int, str] = field(default_factory=dict)
    qemu: list[int] = field(default_factory=list)
    monitors: list[int] = field(default_factory=list)
    cgroups: list[Cgroup] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)

    @property
    def processes(self) -> list[int]:
        pids = list(self.qemu) + list(self.monitors)
        for cg in self.cgroups:
            pids += cg.pids()
        return pids


def _instances(base: str) -> dict[int, str]:
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            path = os.path.join(base, name)
            if name.isdigit() and os.path.isdir(path) and not os.path.islink(path):
                found[int(name)] = path
    return found


def _our_qemu(inst: str) -> int:
    pidfile = os.path.join(inst, "qemu.pid")
    pid = read_pid(pidfile)
    if pid and pidfile in cmdline(pid):
        return pid
    return 0


def _our_monitor(inst: str) -> int:
    pid = read_pid(os.path.join(inst, "shim.pid"))
    args = cmdline(pid) if pid else []
    if SHIM_MODULE in args and any(inst in a for a in args):
        return pid
    return 0


def _cgroup_ids(base: str) -> set[int]:
    """IDs of this node's container cgroups that still exist."""
    ids: set[int] = set()
    try:
        probe = Cgroup.for_vm(base, 0)
    except CgroupError:
        return ids
    node_dir = os.path.dirname(probe.main)
    with contextlib.suppress(OSError):
        ids.update(int(n) for n in os.listdir(node_dir) if n.isdigit())
    return ids


def _netns_links(init_pids: set[int]) -> list[str]:
    names: list[str] = []
    with contextlib.suppress(OSError):
        for name in os.listdir(container_net.NETNS_DIR):
            path = os.path.join(container_net.NETNS_DIR, name)
            try:
                target = os.readlink(path)
            except OSError:
                continue
            parts = target.split("/")
            # /proc/<pid>/ns/net
            if len(parts) == 5 and parts[2].isdigit() and int(parts[2]) in init_pids:
                names.append(name)
    return names


def _taps(inst: str) -> list[str]:
    try:
        with open(os.path.join(inst, "taps")) as fh:
            return [t.strip() for t in fh.read().split() if t.strip()]
    except OSError:
        return []


def scan(base: str) -> Leftovers:
    """Everything of this node's VMs still on the host (blocking: /proc and /sys reads)."""
    base = os.path.abspath(base)
    found = Leftovers(base, _instances(base))
    init_pids: set[int] = set()
    for inst in found.instances.values():
        pid = _our_qemu(inst)
        if pid:
            found.qemu.append(pid)
        monitor = _our_monitor(inst)
        if monitor:
            found.monitors.append(monitor)
        init = read_pid(os.path.join(inst, "init.pid"))
        if init:
            init_pids.add(init)
        found.taps += _taps(inst)
    for vm_id in sorted(_cgroup_ids(base) | set(found.instances)):
        try:
            cg = Cgroup.for_vm(base, vm_id)
        except CgroupError:
            break
        if os.path.isdir(cg.main):
            found.cgroups.append(cg)
            init_pids.update(cg.pids())
    found.netns = _netns_links(init_pids)
    return found


def clean(found: Leftovers) -> list[str]:
    """Kill the processes, remove cgroups and netns links (blocking); returns errors."""
    errors: list[str] = []
    for cg in found.cgroups:
        # a frozen task (a BUILDING container) only dies once thawed
        with contextlib.suppress(OSError):
            cg.thaw()
        with contextlib.suppress(OSError):
            cg.kill_all()
    for pid in found.qemu + found.monitors:
        logger.info("killing process: %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        left = [p for p in found.processes if alive(p)]
        if not left:
            break
        time.sleep(0.05)
    else:
        errors.append(f"processes still alive after SIGKILL: {left}")
    for cg in found.cgroups:
        cg.remove()
    for name in found.netns:
        container_net.unlink_netns(name)
    return errors


__all__ = ["Leftovers", "alive", "clean", "cmdline", "read_pid", "scan"]
