"""The KVM runtime: one QEMU process per VM, driven over QMP.

Launch follows 2.8 (reference 3.4): make ``<base>/<id>``, create the snapshot
overlays, link ``<base>/namespaces/<ns>/<uuid>`` to it and write ``name`` and
``config``, start QEMU paused (``-S``) and connect QMP. QMP events move the
state at once (STOP -> PAUSED, RESUME -> RUNNING, SHUTDOWN -> QUIT); the
process watcher turns any exit into QUIT and writes ``state``.

Two node-level choices 2.8 does not have: the accelerator comes from
``settings.accel`` (auto, kvm, tcg) and is added as ``-accel``, and ``-cpu
host`` becomes ``host,-arch-capabilities`` under KVM (QEMU 7.2 aborts on
nested KVM otherwise) and ``max`` under TCG (``host`` needs KVM). Tap
come from the networking engine (:mod:`megabus.handlers.net.vmnics`), on the
node's bridge table that :class:`~megabus.handlers.vms.host.VmHost` carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from megabus.bus.errors import CommandError
from megabus.bus.tasks import TaskSet
from megabus.config.settings import Settings
from megabus.handlers.language.goerrors import os_error_text
from megabus.handlers.model.vm import VM, VMState
from megabus.handlers.net import vmnics
from megabus.handlers.vms._instance import InstanceFiles
from megabus.handlers.vms._qemu_args import final_args, go_join, qemu_args
from megabus.handlers.vnc import Event, VncShim

if TYPE_CHECKING:
    from megabus.handlers.vms._host import VmHost

logger = logging.getLogger(__name__)

#: 2.8 dials QMP 50 times, 100 ms apart.
QMP_TRIES = 50
QMP_RETRY = 0.1
#: Seconds a QMP command may take.
QMP_TIMEOUT = 30.0
#: Seconds to wait for QEMU to exit after SIGKILL.
KILL_TIMEOUT = 10.0
#: Keep this much of QEMU's stderr for error messages.
STDERR_KEEP = 4096


def resolve_accel(settings: Settings) -> str:
    """``kvm`` or ``tcg`` from ``settings.accel`` (auto: kvm when /dev/kvm is usable)."""
    accel = settings.accel
    if accel == "auto":
        return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
    if accel not in ("kvm", "tcg"):
        raise CommandError(f"invalid accel setting: {accel} (want auto, kvm or tcg)")
    return accel


def resolve_binary(qemu: str) -> str:
    """The QEMU binary: a path as given, else looked up on PATH.

    2.8's default ``kvm`` names a wrapper that forces KVM; it resolves to
    ``qemu-system-x86_64`` so the accelerator setting decides instead.
    """
    if "/" in qemu:
        return qemu
    if qemu == "kvm":
        found = shutil.which("qemu-system-x86_64") or shutil.which("kvm")
    else:
        found = shutil.which(qemu)
    if found is None:
        raise CommandError(f'exec: "{qemu}": executable file not found in $PATH')
    return found


def adapt_cpu(args: list[str], accel: str) -> list[str]:
    """Make ``-cpu host`` work on this accelerator (see the module docstring)."""
    out = list(args)
    for i in range(len(out) - 1):
        if out[i] == "-cpu" and out[i + 1] == "host":
            out[i + 1] = "host,-arch-capabilities" if accel == "kvm" else "max"
    return out


async def run_tool(*argv: str) -> str:
    """Run a helper (``qemu-img``) and return its stdout; its stderr becomes the error."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise CommandError(f"{os.path.basename(argv[0])}: {text}")
    return out.decode(errors="replace")


async def image_format(path: str) -> str:
    """The format ``qemu-img info`` reports for ``path``."""
    info = json.loads(await run_tool("qemu-img", "info", "--output=json", path))
    return str(info.get("format", "raw"))


class KvmRuntime(InstanceFiles):
    """Drives one VM's QEMU process."""

    def __init__(self, vm: VM, host: VmHost) -> None:
        self.vm = vm
        self.host = host
        self.settings = host.settings
        self.proc: asyncio.subprocess.Process | None = None
        self.qmp: QMPClient | None = None
        self.lock = asyncio.Lock()
        self.taps: list[str] = []
        self.hotplug: dict[int, tuple[str, str]] = {}
        self._stderr = b""
        self._tasks = TaskSet(f"vm{vm.id}")
        self._events_task: asyncio.Task[None] | None = None
        self._exited: asyncio.Event = asyncio.Event()
        self._exited.set()
        self.shim: VncShim | None = None
        vm.listeners.append(self._write_state)

    # -- files -------------------------------------------------------------------

    def _prepare_files(self) -> None:
        os.makedirs(self.path, exist_ok=True)
        self._link_namespace()
        for stale in ("qmp", "vnc", "qemu.pid"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.path, stale))
        self._write_name()
        self._write_config()

    async def _snapshots(self) -> list[str]:
        cfg = self.vm.config
        if not cfg.snapshot:
            return []
        paths: list[str] = []
        for i, disk in enumerate(cfg.disks):
            dst = os.path.join(self.path, f"disk-{i}.qcow2")
            if not await asyncio.to_thread(os.path.exists, dst):
                fmt = await image_format(disk.path)
                await run_tool("qemu-img", "create", "-f", "qcow2", "-b", disk.path, "-F", fmt, dst)
            disk.snapshot_path = dst
            paths.append(dst)
        return paths

    # -- launch ------------------------------------------------------------------

    async def launch(self) -> None:
        """Start QEMU paused and connect QMP; on failure the VM is in ERROR and this raises."""
        try:
            await self._launch()
        except CommandError as err:
            await self._abort()
            self.vm.set_error(str(err))
            raise
        except OSError as err:
            await self._abort()
            text = os_error_text(err, self.path)
            self.vm.set_error(text)
            raise CommandError(text) from err
        except QMPError as err:
            await self._abort()
            self.vm.set_error(str(err))
            raise CommandError(str(err)) from err

    async def _launch(self) -> None:
        vm = self.vm
        cfg = vm.config
        await asyncio.to_thread(self._prepare_files)
        snapshots = await self._snapshots()
        if cfg.networks:
            self.taps = await vmnics.create_vm_taps(self.host.bridges, vm)
            # the config again: it now holds the NICs' MACs, which -recover restores
            await asyncio.to_thread(self._write_config)
        accel = resolve_accel(self.settings)
        binary = resolve_binary(cfg.qemu)
        args = qemu_args(
            cfg, vm.id, self.path, vm.uuid, taps=self.taps, snapshot_paths=snapshots,
            hugepages=self.host.hugepages.get(vm.namespace, ""),
        )  # fmt: skip
        argv = [binary, "-accel", accel, *adapt_cpu(final_args(cfg, args), accel)]
        logger.info("vm %d: launching %s", vm.id, " ".join(argv))
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.path,
                start_new_session=True,  # a ^C to the node must not reach the guests
            )
        except OSError as err:
            raise CommandError(f"fork/exec {binary}: {err.strerror}") from err
        vm.pid = self.proc.pid
        self._exited = asyncio.Event()
        self._spawn(self._watch(self.proc), f"vm{vm.id}-watch")
        await self._connect_qmp()
        await self._start_vnc()

    async def _start_vnc(self) -> None:
        """2.8's launch step 6: a new VNC shim on a random port (``vnc_port``)."""
        await self._stop_vnc()
        vm = self.vm
        screens = self.host.vnc

        def route(event: Event) -> None:
            screens.route(vm.namespace, vm.name, event)

        self.shim = VncShim(self.file("vnc"), route, f"vm{vm.id}")
        vm.vnc_port = await self.shim.start()

    async def _stop_vnc(self) -> None:
        shim, self.shim = self.shim, None
        if shim is not None:
            await shim.close()

    async def _connect_qmp(self) -> None:
        path = os.path.join(self.path, "qmp")
        qmp = QMPClient(f"vm{self.vm.id}")
        last: Exception | None = None
        for _ in range(QMP_TRIES):
            if self._exited.is_set():
                raise CommandError(self._exit_text())
            # wait for the socket first: qemu.qmp logs every failed connect as an error
            if not await asyncio.to_thread(os.path.exists, path):
                await asyncio.sleep(QMP_RETRY)
                continue
            try:
                await qmp.connect(path)
                break
            except ConnectError as err:
                last = err
                await asyncio.sleep(QMP_RETRY)
        else:
            raise CommandError(f"unable to connect to qmp socket: {last or 'no socket'}")
        self.qmp = qmp
        self._events_task = self._spawn(self._events(qmp), "events")
        # QEMU may die right after QMP connects (-cpu host on nested KVM): ask once
        try:
            await self.execute("query-status")
        except CommandError:
            if self._exited.is_set() or not await self._still_alive():
                raise CommandError(self._exit_text()) from None
            raise

    async def _still_alive(self) -> bool:
        try:
            await asyncio.wait_for(self._exited.wait(), 0.5)
        except TimeoutError:
            return True
        return False

    def _exit_text(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        err = self._stderr.decode(errors="replace").strip()
        text = f"qemu exited ({code})" if code is not None else "qemu exited"
        return f"{text}: {err}" if err else text

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self._tasks.spawn(coro, name)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Collect stderr until QEMU exits, then mark the VM QUIT."""
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(1024):
            self._stderr = (self._stderr + chunk)[-STDERR_KEEP:]
        await proc.wait()
        logger.info("vm %d: qemu exited with %s", self.vm.id, proc.returncode)
        if self._stderr:
            logger.info("vm %d: qemu stderr: %s", self.vm.id, self._stderr.decode(errors="replace"))
        self._exited.set()
        if self.vm.state & (VMState.BUILDING | VMState.RUNNING | VMState.PAUSED):
            self.vm.set_state(VMState.QUIT)
        await self._close_qmp()

    async def _events(self, qmp: QMPClient) -> None:
        async for event in qmp.events:
            name = event.get("event")
            logger.debug("vm %d: qmp event %s", self.vm.id, name)
            if name == "STOP" and self.vm.state == VMState.RUNNING:
                self.vm.set_state(VMState.PAUSED)
            elif name == "RESUME":
                self.vm.set_state(VMState.RUNNING)
            elif name == "SHUTDOWN":
                self.vm.set_state(VMState.QUIT)

    async def _close_qmp(self) -> None:
        qmp, self.qmp = self.qmp, None
        if qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(qmp.disconnect(), 5)
        events, self._events_task = self._events_task, None
        if events is not None:
            events.cancel()

    async def _abort(self) -> None:
        """Undo a half-done launch: kill QEMU if it started."""
        await self._kill_process()
        await self._close_qmp()
        await self._stop_vnc()

    # -- QMP -----------------------------------------------------------------------

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Run one QMP command; its error text becomes a CommandError."""
        qmp = self.qmp
        if qmp is None:
            raise CommandError(f"vm {self.vm.id} has no qmp connection")
        try:
            return await asyncio.wait_for(qmp.execute(cmd, args), QMP_TIMEOUT)
        except ExecuteError as err:
            raise CommandError(str(err)) from err
        except (QMPError, OSError, TimeoutError) as err:
            raise CommandError(f"qmp {cmd}: {str(err) or type(err).__name__}") from err

    async def hmp(self, line: str) -> str:
        """Run a human monitor command through QMP; its output is the error when not empty."""
        out = await self.execute("human-monitor-command", {"command-line": line})
        return str(out or "")

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """2.8's ``Start``: relaunch a QUIT/ERROR VM, then ``cont``."""
        async with self.lock:
            vm = self.vm
            if vm.state & VMState.RUNNING:
                return
            if vm.state in (VMState.QUIT, VMState.ERROR):
                self._begin_relaunch()
                self.hotplug.clear()  # a new QEMU has none of the old one's drives
                await self.launch()
            if vm.state == VMState.BUILDING and vm.config.backchannel:
                # 2.8 connects cc on a VM's first start; the dialer keeps
                # redialling the virtio-serial socket until the VM is flushed
                await self.host.cc.attach_serial(vm, self.file("cc"))
            try:
                await self.execute("cont")
            except CommandError as err:
                vm.set_error(str(err))
                raise
            vm.set_state(VMState.RUNNING)

    async def stop(self) -> None:
        """QMP ``stop``; only a RUNNING VM can be stopped."""
        async with self.lock:
            if self.vm.state != VMState.RUNNING:
                raise CommandError(f"vm not running: {self.vm.id}")
            try:
                await self.execute("stop")
            except CommandError as err:
                self.vm.set_error(str(err))
                raise
            self.vm.set_state(VMState.PAUSED)

    async def kill(self) -> None:
        """SIGKILL QEMU and wait until it is gone (the VM is then QUIT)."""
        async with self.lock:
            await self._kill_process()
            if self.vm.state & (VMState.BUILDING | VMState.RUNNING | VMState.PAUSED):
                self.vm.set_state(VMState.QUIT)

    async def _kill_process(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        try:
            await asyncio.wait_for(self._exited.wait(), KILL_TIMEOUT)
        except TimeoutError:
            raise CommandError(f"vm {self.vm.id}: qemu did not exit after SIGKILL") from None

    async def flush(self) -> None:
        """Remove the instance directory, the namespace link and the taps."""
        async with self.lock:
            await self.host.cc.detach(self.vm)
            await self._close()
            if self.taps:
                await vmnics.destroy_vm_taps(self.host.bridges, self.vm)
            await asyncio.to_thread(self._remove_files)

    def _remove_files(self) -> None:
        self._unlink_namespace()
        shutil.rmtree(self.path, ignore_errors=True)

    async def _close(self) -> None:
        await self._kill_process()
        await self._close_qmp()
        await self._stop_vnc()
        await self._tasks.aclose(KILL_TIMEOUT)

    async def close(self) -> None:
        """Kill QEMU and stop every task (node shutdown)."""
        async with self.lock:
            await self._close()

    # -- files the VM writes ------------------------------------------------------------

    def file(self, name: str) -> str:
        """A path inside the instance directory."""
        return go_join(self.path, name)
