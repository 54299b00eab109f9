"""Saving a KVM VM: its disk (QMP ``drive-backup``) and its state (QMP ``migrate``).

2.8 (reference 3.4, 8.3): ``vm snapshot`` first copies the top layer of every
disk the VM writes to (``sync: top``, so the copy keeps the original image as
its backing file) and waits for the block jobs to finish, then migrates the
state to ``exec:cat > <file>``, which leaves the VM PAUSED. ``vm migrate``
only migrates. Both return once the migration is under way; QMP
``query-migrate`` reports its progress (``vm migrate`` / ``vm snapshot``
without arguments). A VM launched with ``vm config migrate <file>`` and
``vm config disk <hdd>`` resumes where the saved one was.

One change from 2.8, which only saves the disks whose file lies under the
instance directory (the snapshot overlays): a VM run without snapshot mode
writes its image in place, and that image is saved too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from typing import Any

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import VMState
from megabus.handlers.vms._kvm import KvmRuntime

logger = logging.getLogger(__name__)

#: Seconds between ``query-block-jobs`` polls while a disk is copied.
JOB_POLL = 0.1
#: Seconds a disk copy may take before the snapshot fails.
JOB_TIMEOUT = 600.0
#: The columns of ``vm migrate`` and ``vm snapshot`` without arguments.
STATUS_HEADER = ["id", "name", "status", "complete (%)"]


def resolve(files_dir: str, name: str) -> str:
    """A file name resolved as 2.8 does: relative names go under the files directory."""
    return name if os.path.isabs(name) else os.path.normpath(os.path.join(files_dir, name))


def _make_parent(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)


def _disk_files(runtime: KvmRuntime) -> set[str]:
    files = set()
    for disk in runtime.vm.config.disks:
        files.add(os.path.realpath(disk.snapshot_path or disk.path))
    return files


def _block_devices(runtime: KvmRuntime, blocks: Any) -> list[str]:
    """The block devices holding the VM's disks (not the cdrom, not hotplugged drives)."""
    inst = os.path.realpath(runtime.path) + os.sep
    wanted = _disk_files(runtime)
    devices: list[str] = []
    for dev in blocks if isinstance(blocks, list) else []:
        inserted = dev.get("inserted") if isinstance(dev, dict) else None
        if not isinstance(inserted, dict) or str(dev.get("device", "")).startswith("hotplug"):
            continue
        path = os.path.realpath(str(inserted.get("file", "")))
        if path.startswith(inst) or path in wanted:
            devices.append(str(dev["device"]))
    return devices


async def save_disk(runtime: KvmRuntime, dst: str) -> list[str]:
    """Copy the VM's disks to ``dst`` (then ``dst.1``, ...); return the files written.

    A VM without disks (kernel or cdrom boot) has nothing to save, as in 2.8.
    """
    vm = runtime.vm
    if not vm.config.disks:
        logger.warning("skipping kvm disk save for non-disk VM: %s", vm.name)
        return []
    devices = _block_devices(runtime, await runtime.execute("query-block"))
    if not devices:
        raise CommandError(f"vm {vm.name}: no disk device found to save")
    await asyncio.to_thread(_make_parent, dst)
    written: list[str] = []
    for i, device in enumerate(devices):
        target = dst if i == 0 else f"{dst}.{i}"
        logger.info("saving disk %s of vm %d to %s", device, vm.id, target)
        await runtime.execute("drive-backup", {"device": device, "sync": "top", "target": target})
        await _wait_jobs(runtime, device)
        written.append(target)
    return written


async def _wait_jobs(runtime: KvmRuntime, device: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        jobs = await runtime.execute("query-block-jobs")
        if not jobs:
            return
        if time.monotonic() > deadline:
            raise CommandError(f"saving disk {device}: block job still running at {JOB_TIMEOUT}s")
        await asyncio.sleep(JOB_POLL)


async def migrate(runtime: KvmRuntime, dst: str) -> None:
    """Start migrating the VM's state to ``dst``; the VM is PAUSED from now on."""
    await asyncio.to_thread(_make_parent, dst)
    vm = runtime.vm
    if not vm.state & (VMState.BUILDING | VMState.RUNNING | VMState.PAUSED):
        raise CommandError(f"vm not running: {vm.id}")
    # migrating pauses the guest; 2.8 marks it first
    vm.set_state(VMState.PAUSED)
    logger.info("migrating vm %d to file %s", vm.id, dst)
    await runtime.execute("migrate", {"uri": f"exec:cat > {shlex.quote(dst)}"})


async def snapshot(runtime: KvmRuntime, state_dst: str, disk_dst: str) -> None:
    """2.8's ``vm snapshot``: the disks, then the state."""
    async with runtime.lock:
        await save_disk(runtime, disk_dst)
        await migrate(runtime, state_dst)


async def query_migrate(runtime: KvmRuntime) -> tuple[str, float]:
    """2.8's ``QueryMigrate``: the status (``""`` when none) and the percent done."""
    if runtime.qmp is None:
        return "", 0.0
    res = await runtime.execute("query-migrate")
    status = str(res.get("status", "")) if isinstance(res, dict) else ""
    if status == "completed":
        return status, 100.0
    if status != "active":
        return status, 0.0
    ram = res.get("ram")
    if not isinstance(ram, dict):
        raise CommandError(f"could not decode ram segment: {ram}")
    total = float(ram.get("total", 0))
    if total == 0:
        raise CommandError("zero total ram!")
    return status, float(ram.get("transferred", 0)) / total * 100


async def status_rows(runtimes: list[KvmRuntime]) -> list[list[str]]:
    """The ``vm migrate`` / ``vm snapshot`` rows: VMs with a migration, by ID."""
    results = await asyncio.gather(*(query_migrate(r) for r in runtimes))
    rows = []
    for runtime, (status, done) in zip(runtimes, results, strict=True):
        if status:
            rows.append([str(runtime.vm.id), runtime.vm.name, status, f"{done:.2f}"])
    return rows
