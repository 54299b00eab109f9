"""Devices changed on a live KVM VM: USB hotplug drives and the cdrom.

Hotplug follows 2.8 (reference 3.2): HMP ``drive_add 0 id=hotplugN,if=none,
file=...`` then ``device_add usb-storage,id=hotplugN,drive=hotplugN,bus=...``,
IDs counting up from one past the highest in use; removal is ``device_del``
then ``drive_del``. Two QEMU 7.2 adaptations: the drive gets
``file.locking=off`` (2.8's QEMU did not lock images, and one image may go to
many VMs), and removal waits for the unplug to finish, since the drive goes
with the device and an early ``drive_del`` leaves its ID taken. The cdrom is
the hard-coded drive ``ide0-cd0``, which every VM has (empty when no cdrom
is configured); its medium changes with ``blockdev-change-medium`` (QEMU
7.2 has no ``change``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from megabus.bus.errors import CommandError
from megabus.handlers.vms._kvm import KvmRuntime

logger = logging.getLogger(__name__)

CDROM_DEVICE = "ide0-cd0"
NO_SUCH_HOTPLUG = "no such hotplug device"
NO_HOTPLUG = "no hotplug devices to remove"
NO_CDROM = "no cdrom inserted"
#: Seconds to wait for QEMU to finish unplugging a USB drive, and between looks.
UNPLUG_TIMEOUT = 5.0
UNPLUG_POLL = 0.02


def usb_bus(version: str, xhci: bool) -> tuple[str, str]:
    """The (version, bus) of a hotplug drive, or 2.8's error."""
    if version in ("", "1.1"):
        return "1.1", "usb-bus.0"
    if version == "2.0":
        return version, "xhci.0" if xhci else "ehci.0"
    if version == "3.0":
        if not xhci:
            raise CommandError(
                f"invalid version: `{version}`. VM configured for EHCI instead of XHCI"
            )
        return version, "xhci.0"
    raise CommandError(f"invalid version: `{version}`")


async def _hmp_ok(runtime: KvmRuntime, line: str, ok: str = "") -> None:
    """Run an HMP line; any output other than ``ok`` is QEMU's error text."""
    out = (await runtime.hmp(line)).strip()
    if out != ok:
        raise CommandError(out)


async def hotplug_add(runtime: KvmRuntime, path: str, version: str, serial: str) -> None:
    """Attach ``path`` as a USB drive."""
    version, bus = usb_bus(version, runtime.vm.config.usb_use_xhci)
    async with runtime.lock:
        n = max(runtime.hotplug, default=-1) + 1
        hid = f"hotplug{n}"
        # QEMU 7.2 locks images; 2.8 lets one file be hotplugged into many VMs
        drive = f"drive_add 0 id={hid},if=none,file={path},file.locking=off"
        await _hmp_ok(runtime, drive, ok="OK")
        device = f"device_add usb-storage,id={hid},drive={hid},bus={bus}"
        if serial:
            device += f",serial={serial}"
        try:
            await _hmp_ok(runtime, device)
        except CommandError:
            # do not leave a drive behind that no device uses
            await runtime.hmp(f"drive_del {hid}")
            raise
        runtime.hotplug[n] = (path, version)


async def _remove(runtime: KvmRuntime, n: int) -> None:
    if n not in runtime.hotplug:
        raise CommandError(NO_SUCH_HOTPLUG)
    hid = f"hotplug{n}"
    await _hmp_ok(runtime, f"device_del {hid}")
    # QEMU 7.2 unplugs asynchronously and then deletes the drive with the
    # device; a drive_del sent before that keeps the ID taken for good
    if await _drive_present(runtime, hid):
        await _hmp_ok(runtime, f"drive_del {hid}")
    del runtime.hotplug[n]


async def _drive_present(runtime: KvmRuntime, hid: str) -> bool:
    """Whether drive ``hid`` is still there after waiting up to UNPLUG_TIMEOUT."""
    deadline = time.monotonic() + UNPLUG_TIMEOUT
    while True:
        blocks = await runtime.execute("query-block")
        present = any(isinstance(b, dict) and b.get("device") == hid for b in blocks or [])
        if not present or time.monotonic() > deadline:
            return present
        await asyncio.sleep(UNPLUG_POLL)


async def hotplug_remove(runtime: KvmRuntime, n: int | None) -> None:
    """Detach drive ``n``, or every drive with None."""
    async with runtime.lock:
        if n is not None:
            await _remove(runtime, n)
            return
        if not runtime.hotplug:
            raise CommandError(NO_HOTPLUG)
        for key in sorted(runtime.hotplug):
            await _remove(runtime, key)


def cdrom(runtime: KvmRuntime) -> str:
    """The image in the cdrom drive now."""
    return str(getattr(runtime, "cdrom", runtime.vm.config.cdrom))


async def _eject(runtime: KvmRuntime, force: bool) -> None:
    await runtime.execute("eject", {"device": CDROM_DEVICE, "force": force})
    runtime.cdrom = ""  # type: ignore[attr-defined]


async def eject_cd(runtime: KvmRuntime, force: bool) -> None:
    """Eject the cdrom; 2.8's error when there is none."""
    async with runtime.lock:
        if not cdrom(runtime):
            raise CommandError(NO_CDROM)
        await _eject(runtime, force)


async def change_cd(runtime: KvmRuntime, path: str, force: bool) -> None:
    """Put ``path`` in the cdrom drive, ejecting what was there."""
    async with runtime.lock:
        if cdrom(runtime):
            await _eject(runtime, force)
        args: dict[str, object] = {"device": CDROM_DEVICE, "filename": path}
        if force:
            args["force"] = True
        await runtime.execute("blockdev-change-medium", args)
        runtime.cdrom = path  # type: ignore[attr-defined]
