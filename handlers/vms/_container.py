"""The container runtime: one container per VM, through the shim, with cgroups and veths.

Launch follows 2.8 (reference 3.5): the cgroups are made and limited
(:mod:`container_cgroup`), then on the first launch the instance directory
and, with ``snapshot true``, the overlay ``megamount_<id>`` (lower: the
filesystem, upper ``<inst>/fs``, work ``<inst>/fs_work``, mounted on
``<inst>/fs``) so the filesystem itself never changes. The ``name``,
``config``, ``uuid`` and ``fifoN`` files are written, and the shim
(:mod:`container_shim`) starts; its monitor process serves the console
(``shim.pid``, ``init.pid`` and ``console_port`` are written too, and
``config`` again once the NICs have their MACs). When it is ready, the NICs are made
(:mod:`container_net`), the container is frozen and released: it stays
BUILDING, frozen just before exec'ing init, until ``vm start`` thaws it.
Nothing a running container needs is held by the node, so containers
survive a node killed with SIGKILL (see :mod:`container_recovery`).

Stop/start freeze and thaw the cgroup. Kill sends SIGKILL to the container's
pid 1 (which takes its whole pid namespace along), thaws so the signal lands,
and waits until the cgroup is empty; the taps, the netns link and the cgroups
go at that moment, as 2.8 does for containers (their taps live from launch to
kill). Flush unmounts the overlay and removes the instance directory.

Where 2.8 and this differ: the shim is a Python module, not a re-exec of
the daemon; limits are set by the node (so a bad limit is a launch error
before any process exists) and the shim only joins; cgroups live under
``megabus/<node key>`` so nodes sharing a host do not collide; a ``tar:``
filesystem is not supported yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from megabus.bus.errors import CommandError
from megabus.bus.tasks import TaskSet
from megabus.handlers.language.goerrors import os_error_text
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.vm import VM, VMState, VMType
from megabus.handlers.vms import _container_net as container_net
from megabus.handlers.vms import _container_sys as sc
from megabus.handlers.vms._container_cgroup import Cgroup, CgroupError, node_key
from megabus.handlers.vms._container_monitor import GO
from megabus.handlers.vms._container_shim import Spec
from megabus.handlers.vms._instance import InstanceFiles

if TYPE_CHECKING:
    from megabus.handlers.vms._host import VmHost

logger = logging.getLogger(__name__)

SHIM_MODULE = "megabus.handlers.vms._container_shim"
#: Seconds to wait for a freeze to complete, and for a killed container to be gone.
FREEZE_TIMEOUT = 10.0
KILL_TIMEOUT = 10.0
#: 2.8 retries a busy overlay unmount this many times, a second apart.
UNMOUNT_RETRIES = 10
UNMOUNT_RETRY = 1.0
POLL = 0.02


def check_config(cfg: VMConfig) -> None:
    """2.8's ``NewContainer`` check, made before a container VM exists."""
    if not cfg.filesystem:
        raise CommandError("unable to create container without a configured filesystem")


async def _poll(done: Callable[[], bool], seconds: float) -> bool:
    """Call ``done`` (a blocking predicate) in a thread until true or ``seconds`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = POLL
    while True:
        if await asyncio.to_thread(done):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def guest_root(vm: VM) -> str:
    """The host path of a container's root as it sees it ("" for a KVM VM or before launch).

    ``cc mount`` bind-mounts it: the overlay ``<inst>/fs`` with snapshot, else
    the filesystem itself.
    """
    runtime = vm.runtime
    if vm.type != VMType.CONTAINER or not isinstance(runtime, ContainerRuntime):
        return ""
    return runtime.effective_path


class ContainerRuntime(InstanceFiles):
    """Drives one container VM."""

    def __init__(self, vm: VM, host: VmHost) -> None:
        self.vm = vm
        self.host = host
        self.settings = host.settings
        self.lock = asyncio.Lock()
        #: The shim's monitor process (its exit is the container's).
        self.proc: asyncio.subprocess.Process | None = None
        #: The root the container sees: ``<inst>/fs`` with snapshot, else the filesystem.
        self.effective_path = ""
        self.cgroup: Cgroup | None = None
        self.console_port = 0
        self.netns = ""
        self.taps: list[str] = []
        self._overlay = False
        self._killing = False
        self._tasks = TaskSet(f"vm{vm.id}")
        self._cleaned = asyncio.Event()
        self._cleaned.set()
        # 2.8: the hostname defaults to the VM's name, and shows in the config
        if not vm.config.hostname:
            vm.config.hostname = vm.name
        vm.listeners.append(self._write_state)

    # -- files -------------------------------------------------------------------

    def _check_conflicts(self) -> None:
        cfg = self.vm.config
        for other in self.host.vms.vms.values():
            if other is self.vm or other.type is not VMType.CONTAINER:
                continue
            if other.config.filesystem != cfg.filesystem:
                continue
            if not (cfg.snapshot and other.config.snapshot):
                raise CommandError(f"filesystem conflict with vm {other.name}: {cfg.filesystem}")

    def _prepare_fs(self) -> None:
        """First launch: the instance directory, the overlay, the namespace link."""
        cfg = self.vm.config
        fs = os.path.abspath(cfg.filesystem)
        if not os.path.isdir(fs):
            what = "not a directory" if os.path.exists(fs) else "no such file or directory"
            raise CommandError(f"overlayMount: stat {cfg.filesystem}: {what}")
        os.makedirs(self.path, 0o700, exist_ok=True)
        if cfg.snapshot:
            upper = os.path.join(self.path, "fs")
            work = os.path.join(self.path, "fs_work")
            os.makedirs(upper, 0o755, exist_ok=True)
            os.makedirs(work, 0o755, exist_ok=True)
            if not os.path.ismount(upper):
                try:
                    sc.mount(
                        f"megamount_{self.vm.id}",
                        upper,
                        "overlay",
                        0,
                        f"lowerdir={fs},upperdir={upper},workdir={work}",
                    )
                except OSError as err:
                    raise CommandError(f"overlayMount: {err}") from None
            self._overlay = True
            self.effective_path = upper
        else:
            self.effective_path = fs
        self._link_namespace()

    def _prepare_files(self) -> None:
        cfg = self.vm.config
        self._write_name()
        self._write_config()
        fd = os.open(self.uuid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(self.vm.uuid + "\n")
        for i in range(cfg.fifos):
            fifo = os.path.join(self.path, f"fifo{i}")
            if not os.path.exists(fifo):  # kept across a relaunch
                try:
                    os.mkfifo(fifo, 0o660)
                except OSError as err:
                    raise CommandError(f"fifo: {err}") from None
        for source in cfg.volume.values():
            try:
                os.makedirs(source, 0o755, exist_ok=True)
            except OSError as err:
                raise CommandError(f"start container: {err}") from None

    @property
    def uuid_file(self) -> str:
        return os.path.join(self.path, "uuid")

    # -- launch ------------------------------------------------------------------

    async def launch(self) -> None:
        """Start the container frozen; on failure the VM is in ERROR and this raises.

        Holds the VM's lock, so a ``vm kill`` during a launch waits for it (as 2.8's).
        """
        async with self.lock:
            await self._launch_locked()

    async def _launch_locked(self) -> None:
        try:
            await self._launch()
        except CgroupError as err:
            await self._abort()
            msg = f"cgroups are not initialized, cannot continue: {err}"
            self.vm.set_error(msg)
            raise CommandError(msg) from None
        except CommandError as err:
            await self._abort()
            self.vm.set_error(str(err))
            raise
        except OSError as err:
            # unexpected here: the node's log keeps where it came from
            logger.exception("vm %d: launch failed", self.vm.id)
            await self._abort()
            text = os_error_text(err, self.path)
            self.vm.set_error(text)
            raise CommandError(text) from err

    async def _launch(self) -> None:
        vm = self.vm
        cfg = vm.config
        check_config(cfg)
        self._killing = False
        vm.pid = 0  # never signal a pid left from an earlier run
        if not self.effective_path:
            self._check_conflicts()
            await asyncio.to_thread(self._prepare_fs)
        cgroup = await asyncio.to_thread(Cgroup.for_vm, self.settings.base, vm.id)
        self.cgroup = cgroup
        await asyncio.to_thread(cgroup.create, cfg.vcpus, cfg.memory)
        await asyncio.to_thread(self._prepare_files)

        status_r, status_w = os.pipe()
        go_r, go_w = os.pipe()
        spec = Spec(
            id=vm.id,
            instance=self.path,
            fs=self.effective_path,
            uuid=vm.uuid,
            uuid_file=self.uuid_file,
            init=list(cfg.init),
            status_fd=status_w,
            go_fd=go_r,
            hostname=cfg.hostname,
            fifos=cfg.fifos,
            preinit=cfg.preinit,
            volumes=[[src, dst] for dst, src in sorted(cfg.volume.items())],
            cgroups=cgroup.paths,
        )
        argv = [sys.executable, "-m", SHIM_MODULE, spec.to_json()]
        logger.info("vm %d: launching container %s", vm.id, " ".join(argv[:3]))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                pass_fds=(status_w, go_r),
                cwd=self.path,
                start_new_session=True,  # a ^C to the node must not reach the containers
            )
        except OSError as err:
            for fd in (status_r, go_w):
                os.close(fd)
            raise CommandError(f"start container: {err}") from err
        finally:
            for fd in (status_w, go_r):
                os.close(fd)
        self._cleaned = asyncio.Event()
        self._spawn(self._watch(self.proc), f"vm{vm.id}-watch")
        try:
            await self._until_ready(status_r)
            await asyncio.to_thread(self._write_launch_files, self.proc.pid)
            await self._network()
            await asyncio.to_thread(cgroup.freeze)
            if not await _poll(cgroup.frozen, FREEZE_TIMEOUT):
                raise CommandError(f"freezer: vm {vm.id} did not freeze")
            # the container goes on to exec init once thawed; closing without
            # this tells the monitor the launch failed, and it kills the container
            os.write(go_w, GO)
        finally:
            os.close(go_w)

    async def _until_ready(self, status_fd: int) -> None:
        """Read the shim's status lines until ``pid``, ``console`` and ``ready`` came."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(status_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        error = ""
        console = ready = False
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    raise CommandError(error or "container exited before it was ready")
                kind, _, text = raw.decode(errors="replace").strip().partition(" ")
                if kind == "pid":
                    self.vm.pid = int(text)
                    logger.debug("vm %d has pid %s", self.vm.id, text)
                elif kind == "console":
                    self.console_port = int(text)
                    console = True
                elif kind == "log":
                    logger.info("vm %d: containerShim: %s", self.vm.id, text)
                elif kind == "error":
                    error = text
                elif kind == "ready":
                    ready = True
                if ready and console and self.vm.pid:
                    return
        finally:
            transport.close()

    async def _network(self) -> None:
        vm = self.vm
        key = node_key(self.settings.base)
        self.netns = await asyncio.to_thread(container_net.link_netns, vm.id, vm.pid, key)
        nics = vm.config.networks
        if not nics:
            return
        for nic in nics:
            nic.driver = ""  # not used by containers (2.8 squashes it too)
        self.taps = await container_net.create_nics(self.host.bridges, nics, vm.pid)
        await asyncio.to_thread(self._write_taps)
        # the config again: it now holds the MACs chosen for the NICs
        await asyncio.to_thread(self._write_config)

    def _write_taps(self) -> None:
        self._write_file("taps", "\n".join(self.taps))

    def _write_launch_files(self, monitor: int) -> None:
        # what -recover needs to find the monitor and show the VM as it was
        self._write_file("shim.pid", str(monitor))
        self._write_file("init.pid", str(self.vm.pid))
        self._write_file("console_port", str(self.console_port))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """When the container ends: release what it held, then QUIT (or ERROR)."""
        try:
            await self._exited(await proc.wait())
        finally:
            self._cleaned.set()

    async def _exited(self, code: int | None) -> None:
        """Release, then QUIT (ERROR for a failure); ``code`` is None when it is not known."""
        logger.info("vm %d exited (%s)", self.vm.id, code)
        await self._release()
        if self.vm.state & (VMState.BUILDING | VMState.RUNNING | VMState.PAUSED):
            if code and not self._killing:
                self.vm.set_error(f"killed container: exit status {code}")
            else:
                self.vm.set_state(VMState.QUIT)

    def adopt_filesystem(self) -> None:
        """-recover: the root the container sees, and whether our overlay is mounted on it.

        A snapshot container whose overlay is not mounted gets it again at its
        next launch (:meth:`_prepare_fs`).
        """
        cfg = self.vm.config
        upper = os.path.join(self.path, "fs")
        if cfg.snapshot and os.path.ismount(upper):
            self.effective_path = upper
            self._overlay = True
        elif not cfg.snapshot:
            self.effective_path = os.path.abspath(cfg.filesystem)

    async def release(self) -> None:
        """What an exited container held: netns link, taps and cgroups (-recover uses it)."""
        await self._release()

    async def _release(self) -> None:
        """Netns link, taps and cgroups of an exited container (its monitor closed the console)."""
        self.console_port = 0
        if self.netns:
            await asyncio.to_thread(container_net.unlink_netns, self.netns)
            self.netns = ""
        if self.taps:
            taps, self.taps = self.taps, []
            await container_net.destroy_nics(self.host.bridges, taps)
        cgroup = self.cgroup
        if cgroup is not None:
            # stragglers outside pid 1's namespace cannot exist, but a thaw may be pending
            if not await _poll(lambda: not cgroup.pids(), KILL_TIMEOUT):
                await asyncio.to_thread(cgroup.kill_all)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(cgroup.thaw)
                await _poll(lambda: not cgroup.pids(), KILL_TIMEOUT)
            await asyncio.to_thread(cgroup.remove)

    async def _abort(self) -> None:
        """Undo a half-done launch: kill the container if it started."""
        try:
            await self._kill_process()
        except CommandError as err:
            logger.error("vm %d: %s", self.vm.id, err)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """2.8's ``Start``: relaunch a QUIT/ERROR container, then thaw it."""
        async with self.lock:
            vm = self.vm
            if vm.state & VMState.RUNNING:
                return
            if vm.state in (VMState.QUIT, VMState.ERROR):
                self._begin_relaunch()
                await self._launch_locked()
            logger.info("starting VM: %d", vm.id)
            if vm.state == VMState.BUILDING and vm.config.backchannel:
                # 2.8's Connect on a first start: the agent dials /cc in the container
                await self.host.cc.attach_unix(vm, os.path.join(self.effective_path, "cc"))
            try:
                await asyncio.to_thread(self._thaw)
            except OSError as err:
                vm.set_error(f"unstartable: freezer: {err}")
                raise CommandError(f"unstartable: freezer: {err}") from None
            vm.set_state(VMState.RUNNING)

    def _thaw(self) -> None:
        if self.cgroup is None:
            raise OSError(errno.ENOENT, "no cgroup")
        self.cgroup.thaw()

    async def stop(self) -> None:
        """Freeze a RUNNING container."""
        async with self.lock:
            vm = self.vm
            if vm.state != VMState.RUNNING:
                raise CommandError(f"vm not running: {vm.id}")
            logger.info("stopping VM: %d", vm.id)
            cgroup = self.cgroup
            try:
                if cgroup is None:
                    raise OSError(errno.ENOENT, "no cgroup")
                await asyncio.to_thread(cgroup.freeze)
            except OSError as err:
                vm.set_error(f"unstoppable: freezer: {err}")
                raise CommandError(f"unstoppable: freezer: {err}") from None
            if not await _poll(cgroup.frozen, FREEZE_TIMEOUT):
                logger.warning("vm %d: still freezing", vm.id)
            vm.set_state(VMState.PAUSED)

    async def kill(self) -> None:
        """SIGKILL, thaw, wait until every process is gone (the VM is then QUIT)."""
        async with self.lock:
            await self._kill_process()
            if self.vm.state & (VMState.BUILDING | VMState.RUNNING | VMState.PAUSED):
                self.vm.set_state(VMState.QUIT)

    async def _kill_process(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            logger.info("Killing VM %d", self.vm.id)
            self._killing = True
            target = self.vm.pid or proc.pid  # the monitor takes pid 1 along (PDEATHSIG)
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
            cgroup = self.cgroup
            if cgroup is not None:
                # a frozen container cannot die: thaw it
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(cgroup.thaw)
        try:
            await asyncio.wait_for(self._cleaned.wait(), KILL_TIMEOUT * 3)
        except TimeoutError:
            raise CommandError(f"vm {self.vm.id}: container did not exit after SIGKILL") from None

    async def flush(self) -> None:
        """Kill if needed, unmount the overlay, remove the instance directory and link."""
        async with self.lock:
            await self._close()
            await self.host.cc.detach(self.vm)
            await self._unmount()
            await asyncio.to_thread(self._remove_files)

    async def _unmount(self) -> None:
        if not self._overlay:
            return
        target = os.path.join(self.path, "fs")
        for _ in range(UNMOUNT_RETRIES):
            try:
                await asyncio.to_thread(sc.umount, target)
            except OSError as err:
                if err.errno == errno.EINVAL and not await asyncio.to_thread(
                    os.path.ismount, target
                ):
                    break  # not mounted (any more)
                if err.errno == errno.EBUSY:
                    logger.info("filesystem busy for vm %d, sleeping", self.vm.id)
                    await asyncio.sleep(UNMOUNT_RETRY)
                    continue
                raise CommandError(f"overlay unmount: {err}") from None
            break
        else:
            raise CommandError("unable to unmount overlay")
        self._overlay = False

    def _remove_files(self) -> None:
        self._unlink_namespace()
        if os.path.ismount(os.path.join(self.path, "fs")):
            # never delete through a mounted filesystem
            raise CommandError(f"vm {self.vm.id}: {self.path}/fs is still mounted")
        shutil.rmtree(self.path, ignore_errors=True)

    async def _close(self) -> None:
        await self._kill_process()
        # the watcher ends by itself once the process is gone; give it the kill's time
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_TIMEOUT):
                await self._tasks.join()

    async def close(self) -> None:
        """Kill the container and unmount its overlay (node shutdown); files stay."""
        async with self.lock:
            await self._close()
            try:
                await self._unmount()
            except CommandError as err:
                logger.error("vm %d: %s", self.vm.id, err)
