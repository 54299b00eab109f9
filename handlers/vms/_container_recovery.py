"""``-recover`` for containers: adopt what a node killed with SIGKILL left running.

2.8 recovers only KVM (reference 8.2, 13.6: containers came back as QUIT kvm
VMs). Here a container survives its node: the shim's monitor process
(:mod:`container_monitor`) owns the console and runs in its own session. For
each instance directory that is a container's (it has the ``uuid`` file only
containers write), :mod:`recovery` has already rebuilt the VM from ``name``,
``config``, ``taps`` and ``state``; this module then:

1. finds the monitor from ``<inst>/shim.pid`` (checked against its command
   line, so a reused pid is never adopted) and the container's pid 1 as the
   monitor's child in the container's cgroup;
2. takes the state from the cgroup freezer: thawed is RUNNING, frozen is
   PAUSED (BUILDING if it never started); no monitor means QUIT, and then
   what the container held (netns link, taps, cgroups) is released, as a
   kill would have;
3. for a live container: the ``/var/run/netns`` link (made again if gone),
   the overlay mount, the console port (``<inst>/console_port``), the taps
   back into the bridge table as Open vSwitch has them, cc listening on
   ``<fs>/cc`` again (the agent redials), and a pidfd on the monitor, whose
   exit makes the VM QUIT.

The monitor is no child of the new node, so the exit status of a recovered
container is not known: its end is QUIT, never ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.paths import read_text
from megabus.handlers.model.vm import KILLABLE, VM, VMState
from megabus.handlers.vms import _container_net as container_net
from megabus.handlers.vms._container import KILL_TIMEOUT, SHIM_MODULE, ContainerRuntime
from megabus.handlers.vms._container_cgroup import Cgroup, CgroupError, node_key
from megabus.handlers.vms._container_shim import Spec
from megabus.handlers.vms._recovery import Found, process_start

if TYPE_CHECKING:
    from megabus.handlers.vms._host import VmHost

logger = logging.getLogger(__name__)


def claims(path: str) -> bool:
    """Whether the instance directory ``path`` is a container's."""
    return os.path.isfile(os.path.join(path, "uuid"))


def find_monitor(instance: str, vm_id: int) -> int:
    """The pid of the container's monitor, or 0 when it is gone."""
    text = read_text(os.path.join(instance, "shim.pid"))
    if not text.isdigit():
        return 0
    pid = int(text)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return 0
    if SHIM_MODULE not in argv or len(argv) < 4:
        return 0
    try:
        spec = Spec.from_json(argv[argv.index(SHIM_MODULE) + 1])
    except (ValueError, TypeError):
        return 0
    if spec.id != vm_id or os.path.realpath(spec.instance) != os.path.realpath(instance):
        return 0  # the pid was reused
    return pid


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def container_pid(cgroup: Cgroup, monitor: int) -> int:
    """The container's pid 1 (host pid): the monitor's child in the container's cgroup."""
    for pid in cgroup.pids():
        if _ppid(pid) == monitor:
            return pid
    return 0


def find_netns(vm_id: int, pid: int, key: str) -> str:
    """The name of the ``/var/run/netns`` link to ``pid``'s netns, or ``""``."""
    target = f"/proc/{pid}/ns/net"
    for name in (container_net.netns_name(vm_id), f"meganet_{key}_{vm_id}"):
        path = os.path.join(container_net.NETNS_DIR, name)
        with contextlib.suppress(OSError):
            if os.readlink(path) == target:
                return name
    return ""


def dead_netns(vm_id: int, key: str) -> list[str]:
    """This VM's netns link names whose process is gone (another node's live ones stay)."""
    out = []
    for name in (container_net.netns_name(vm_id), f"meganet_{key}_{vm_id}"):
        path = os.path.join(container_net.NETNS_DIR, name)
        if os.path.islink(path) and not os.path.exists(path):
            out.append(name)
    return out


class RecoveredContainer(ContainerRuntime):
    """A container whose monitor this node did not start: watched through a pidfd.

    Once relaunched (``vm start`` after QUIT) the base runtime's child takes over.
    """

    def __init__(self, vm: VM, host: VmHost) -> None:
        super().__init__(vm, host)
        self.adopted_pid = 0
        self._pidfd = -1

    def watch(self, monitor: int) -> None:
        """Release and QUIT when ``monitor`` exits.

        Raises:
            ProcessLookupError: it is gone already.
        """
        self._pidfd = os.pidfd_open(monitor)
        self.adopted_pid = monitor
        self._cleaned = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._pidfd, self._gone)

    def _gone(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        logger.info("vm %d: recovered container (monitor %d) exited", self.vm.id, self.adopted_pid)
        self.adopted_pid = 0
        self._spawn(self._ended(), f"vm{self.vm.id}-ended")

    async def _ended(self) -> None:
        try:
            await self._exited(None)
        finally:
            self._cleaned.set()

    async def _kill_process(self) -> None:
        if self.proc is not None or self._cleaned.is_set():
            await super()._kill_process()
            return
        logger.info("Killing VM %d", self.vm.id)
        self._killing = True
        target = self.vm.pid or self.adopted_pid  # the monitor takes pid 1 along
        if target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        cgroup = self.cgroup
        if cgroup is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(cgroup.thaw)  # a frozen container cannot die
        try:
            await asyncio.wait_for(self._cleaned.wait(), KILL_TIMEOUT * 3)
        except TimeoutError:
            raise CommandError(f"vm {self.vm.id}: container did not exit after SIGKILL") from None


def _freezer_state(cgroup: Cgroup, recorded: VMState) -> VMState:
    try:
        frozen = cgroup.frozen()
    except OSError:
        return VMState.RUNNING
    if not frozen:
        return VMState.RUNNING
    return VMState.BUILDING if recorded == VMState.BUILDING else VMState.PAUSED


async def adopt(host: VmHost, vm: VM, found: Found) -> None:
    """Rebuild the runtime of a recovered container VM (see the module docstring)."""
    rt = RecoveredContainer(vm, host)
    vm.runtime = rt
    await asyncio.to_thread(rt.adopt_filesystem)
    # a container that quit still shows its last pid
    last = await asyncio.to_thread(read_text, os.path.join(found.path, "init.pid"))
    vm.pid = int(last) if last.isdigit() else 0
    if not found.state & KILLABLE:
        vm.set_state(found.state)  # killed or failed before the crash: released already
        return
    key = node_key(host.settings.base)
    try:
        rt.cgroup = await asyncio.to_thread(Cgroup.for_vm, host.settings.base, vm.id)
    except CgroupError as err:
        vm.set_error(f"recover: {err}")
        return
    monitor = await asyncio.to_thread(find_monitor, found.path, vm.id)
    pid = await asyncio.to_thread(container_pid, rt.cgroup, monitor) if monitor else 0
    rt.taps = [n.tap for n in vm.config.networks if n.tap]
    net = host.bridges
    if not pid:
        logger.info("recover vm %d (%s): no container, QUIT", vm.id, vm.name)
        # release what the dead container held, as its kill would have
        if monitor:
            with contextlib.suppress(ProcessLookupError):
                os.kill(monitor, signal.SIGKILL)
        for name in await asyncio.to_thread(dead_netns, vm.id, key):
            await asyncio.to_thread(container_net.unlink_netns, name)
        for tap in rt.taps:
            await net.adopt_tap(tap)
        vm.set_state(VMState.QUIT)
        await rt.release()
        return
    vm.pid = pid
    vm.launched = process_start(monitor) or vm.launched
    port = await asyncio.to_thread(read_text, os.path.join(found.path, "console_port"))
    rt.console_port = int(port) if port.isdigit() else 0
    try:
        rt.watch(monitor)
        rt.netns = await asyncio.to_thread(find_netns, vm.id, pid, key)
        if not rt.netns:
            rt.netns = await asyncio.to_thread(container_net.link_netns, vm.id, pid, key)
        for tap in rt.taps:
            if await net.adopt_tap(tap) is None:
                logger.warning("recover vm %d: tap %s is gone", vm.id, tap)
        vm.set_state(await asyncio.to_thread(_freezer_state, rt.cgroup, found.state))
        if vm.config.backchannel and vm.state != VMState.BUILDING:
            # 2.8 connects cc at the first start; the agent redials the socket
            await host.cc.attach_unix(vm, os.path.join(rt.effective_path, "cc"))
    except (CommandError, OSError) as err:
        vm.set_error(f"recover: {err}")
    logger.info("recovered container %d (%s) in %s: %s", vm.id, vm.name, vm.namespace, vm.state)
