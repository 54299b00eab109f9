"""``-recover``: find what a killed node left running and adopt its QEMUs.

2.8 (reference 8.2): QEMU processes outlive a killed node (they run in their
own session), and the base directory says what they were. At start, when
``settings.recover`` is set, the node runs :func:`megabus.handlers.vms.recover.recover`, which:

1. scans ``/proc`` for QEMU processes of this base (``-pidfile
   <base>/<id>/qemu.pid``) and takes their ``-name <id>`` and ``-uuid``;
2. walks the ``<base>/namespaces/<ns>/<uuid>`` links to ``<base>/<id>``;
3. reads ``name``, ``config`` (the ``vm config`` lines, run through the real
   ``vm config`` handlers in the VM's namespace, as 2.8's ``ReadConfig``),
   ``taps`` and ``state`` (absent: still BUILDING);
4. for a VM in BUILDING, RUNNING or PAUSED with its QEMU alive under the same
   ID, adopts the process (watches it through a pidfd, reconnects QMP and
   asks QEMU for the true run state); without a process, the VM is QUIT.

5. puts every VM's taps back in the bridge table as Open vSwitch has them
   (2.8's ``RecoverTap``), so ``vm net``, ``vm info`` and ``clear all`` go
   on working, and, for a started VM with a backchannel, dials cc again.

Differences from 2.8, all toward "``vm info`` shows what it showed before":
uptime counts from the process start, the ID counter moves past the
recovered IDs (2.8 could hand a recovered ID out again) and so do the
``vm-<n>`` names, and a VM whose ID does not match its process becomes ERROR
instead of stopping the node. Containers recover too
(:mod:`container_recovery`), which 2.8 cannot. Bonds are not recovered yet. Tags set with ``vm tag``
after launch, hotplugged drives and a changed cdrom are not in the base
directory, so, as in 2.8, they are not recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.vm import KILLABLE, VM, VMState, VMType
from megabus.handlers.vms._kvm import KILL_TIMEOUT, KvmRuntime

if TYPE_CHECKING:
    from megabus.handlers.vms._host import VmHost

logger = logging.getLogger(__name__)

UNNAMED = re.compile(r"vm-(\d+)")


@dataclass
class QemuProcess:
    """A running QEMU found in ``/proc``."""

    pid: int
    vm_id: int
    uuid: str


@dataclass
class Found:
    """One VM as the base directory describes it."""

    vm_id: int
    namespace: str
    uuid: str
    path: str
    name: str = ""
    state: VMState = VMState.BUILDING
    config_lines: list[str] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)


# -- what is on the host -------------------------------------------------------------------


def _arg(argv: list[str], flag: str) -> str:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(flag) + 1]
    return ""


def qemu_processes(base: str) -> dict[str, QemuProcess]:
    """The QEMU processes whose instance directory is under ``base``, by UUID."""
    base = os.path.realpath(base)
    found: dict[str, QemuProcess] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not os.path.basename(argv[0]).startswith(("qemu-system", "kvm")):
            continue
        pidfile, name, uuid = _arg(argv, "-pidfile"), _arg(argv, "-name"), _arg(argv, "-uuid")
        if not (pidfile and name.isdigit() and uuid):
            continue
        if os.path.dirname(os.path.dirname(os.path.realpath(pidfile))) != base:
            continue  # another node's VM
        found[uuid] = QemuProcess(int(entry), int(name), uuid)
    return found


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def scan_base(base: str) -> list[Found]:
    """Every VM that ``<base>/namespaces/<ns>/<uuid>`` links to, by ID."""
    root = os.path.join(base, "namespaces")
    out: list[Found] = []
    for ns in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for uuid in sorted(os.listdir(os.path.join(root, ns))):
            link = os.path.join(root, ns, uuid)
            path = os.path.realpath(link)
            vm_id = os.path.basename(path)
            if not vm_id.isdigit() or not os.path.isdir(path):
                logger.warning("recover: %s does not lead to a VM directory", link)
                continue
            found = Found(int(vm_id), ns, uuid, path)
            found.name = (_read(os.path.join(path, "name")) or "").strip()
            found.config_lines = (_read(os.path.join(path, "config")) or "").splitlines()
            taps = _read(os.path.join(path, "taps"))
            found.taps = taps.split("\n") if taps else []
            text = (_read(os.path.join(path, "state")) or "BUILDING").strip()
            found.state = VMState.__members__.get(text, VMState.ERROR)
            out.append(found)
    return sorted(out, key=lambda f: f.vm_id)


def process_start(pid: int) -> float | None:
    """Wall-clock start time of a process (``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


# -- adopting a running QEMU -----------------------------------------------------------------


class RecoveredKvm(KvmRuntime):
    """A KVM runtime for a QEMU this node did not start (it is no child of ours).

    Exit is seen through a pidfd; kill is a SIGKILL to the pid. Once the VM is
    relaunched (``vm start`` after QUIT), the base runtime's child process takes
    over.
    """

    def __init__(self, vm: VM, host: VmHost) -> None:
        super().__init__(vm, host)
        self.adopted_pid = 0
        self._pidfd = -1

    async def adopt(self, pid: int) -> None:
        """Watch ``pid`` and reconnect QMP to it."""
        self.adopted_pid = pid
        self.vm.pid = pid
        self._exited = asyncio.Event()
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone()
            raise CommandError(f"qemu process {pid} is gone") from None
        asyncio.get_running_loop().add_reader(self._pidfd, self._gone)
        await self._connect_qmp()
        await self._start_vnc()  # 2.8: a new shim, on a new port

    def _gone(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if self._exited.is_set():
            return
        logger.info("vm %d: recovered qemu %d exited", self.vm.id, self.adopted_pid)
        self.adopted_pid = 0
        self._exited.set()
        if self.vm.state & KILLABLE:
            self.vm.set_state(VMState.QUIT)
        self._spawn(self._close_qmp(), f"vm{self.vm.id}-close")

    async def _kill_process(self) -> None:
        if self.proc is not None or not self.adopted_pid:
            await super()._kill_process()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.adopted_pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(self._exited.wait(), KILL_TIMEOUT)
        except TimeoutError:
            raise CommandError(f"vm {self.vm.id}: qemu did not exit after SIGKILL") from None


async def _run_state(runtime: KvmRuntime, recorded: VMState) -> VMState:
    """The state QEMU is really in (the node may have died between QMP and the file)."""
    status = await runtime.execute("query-status")
    if isinstance(status, dict) and status.get("running"):
        return VMState.RUNNING
    prelaunch = isinstance(status, dict) and status.get("status") == "prelaunch"
    if recorded == VMState.BUILDING and prelaunch:
        return VMState.BUILDING
    return VMState.PAUSED


# -- rebuilding the table ----------------------------------------------------------------------


#: Rebuilds a recovered VM's config from its ``vm config`` lines (the node runs
#: them through its real ``vm config`` handlers, as 2.8's ``ReadConfig``).
ReadConfig = Callable[[Found], Awaitable[VMConfig]]


async def _adopt_taps(host: VmHost, vm: VM) -> None:
    """Put a KVM VM's taps back in the bridge table (they live until flush, as in 2.8)."""
    net = host.bridges
    for nic in vm.config.networks:
        if not nic.tap:
            continue
        try:
            if await net.adopt_tap(nic.tap, mac=nic.mac) is None:
                logger.warning("recover vm %d: tap %s is gone", vm.id, nic.tap)
        except CommandError as err:
            logger.error("recover vm %d: tap %s: %s", vm.id, nic.tap, err)


def recovered_vm(found: Found, cfg: VMConfig) -> VM:
    """The VM record of ``found`` (KVM until a runtime claims it)."""
    for nic, tap in zip(cfg.networks, found.taps, strict=False):
        nic.tap = tap
    vm = VM(
        id=found.vm_id,
        name=found.name or f"vm-{found.vm_id}",
        namespace=found.namespace,
        type=VMType.KVM,
        config=cfg,
        uuid=found.uuid,
        instance_path=found.path,
        tags=dict(cfg.tags),
    )
    return vm


async def adopt_kvm(host: VmHost, vm: VM, found: Found, procs: dict[str, QemuProcess]) -> None:
    """Give ``vm`` a KVM runtime and, when its QEMU runs, adopt the process."""
    cfg = vm.config
    runtime = RecoveredKvm(vm, host)
    runtime.taps = [n.tap for n in cfg.networks if n.tap]
    for i, disk in enumerate(cfg.disks):
        overlay = os.path.join(found.path, f"disk-{i}.qcow2")
        if cfg.snapshot and await asyncio.to_thread(os.path.exists, overlay):
            disk.snapshot_path = overlay
    vm.runtime = runtime
    await _adopt_taps(host, vm)
    # a VM that quit still shows its last pid, which QEMU's pidfile keeps
    pidfile = await asyncio.to_thread(_read, os.path.join(found.path, "qemu.pid"))
    if pidfile and pidfile.strip().isdigit():
        vm.pid = int(pidfile.strip())
    # the VM starts in BUILDING; set_state moves it on and rewrites its state file
    if not found.state & KILLABLE:
        vm.set_state(found.state)
        return
    proc = procs.get(found.uuid)
    if proc is None:
        logger.info("recover vm %d (%s): no qemu process, QUIT", vm.id, vm.name)
        vm.set_state(VMState.QUIT)
        return
    if proc.vm_id != vm.id:
        vm.set_error(f"recovered qemu {proc.pid} runs as vm {proc.vm_id}, not {vm.id}")
        return
    vm.launched = process_start(proc.pid) or vm.launched
    try:
        await runtime.adopt(proc.pid)
        vm.set_state(await _run_state(runtime, found.state))
        if vm.config.backchannel and vm.state != VMState.BUILDING:
            # 2.8's Connect at recovery: dial the virtio-serial port again
            await host.cc.attach_serial(vm, runtime.file("cc"))
    except CommandError as err:
        vm.set_error(f"recover: {err}")
    logger.info("recovered vm %d (%s) in %s: %s", vm.id, vm.name, vm.namespace, vm.state)
