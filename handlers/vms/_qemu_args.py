"""minimega 2.8's qemu argument line (``qemuArgs``), in its exact order.

The line is built from a :class:`VMConfig` and the VM's runtime facts (ID,
instance path, UUID, tap names, snapshot overlays). ``vm config qemu-override``
shows it for a VM that does not exist yet (ID 0, no instance path), which is
why every path goes through :func:`go_join` (Go's ``filepath.Join`` drops empty
parts: ``unix:vnc``). One deliberate change from 2.8: AHCI disks use
``ide-hd``, since QEMU 6 removed ``ide-drive``; and ``optimize hugepages``
gives ``-mem-path`` where 2.8 wrote ``-mem-info``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from megabus.handlers.model.config import VMConfig, unescape_string

#: Slots per PCI bridge before a new bridge is added (2.8 ``DEV_PER_BUS``).
DEV_PER_BUS = 32
#: Ports per virtio-serial controller (2.8 ``DEV_PER_VIRTIO``).
DEV_PER_VIRTIO = 30


def go_join(*parts: str) -> str:
    """Go's ``filepath.Join``: skip empty parts, clean the result."""
    kept = [p for p in parts if p]
    return os.path.normpath(os.path.join(*kept)) if kept else ""


def virtio_port_names(spec: str) -> list[str]:
    """The virtio-serial port names: a count gives ``virtio-serial<i>``, else a comma list."""
    if not spec:
        return []
    if spec.isdigit():
        return [f"virtio-serial{i}" for i in range(int(spec))]
    return spec.split(",")


def disk_cache(cfg: VMConfig, cache: str) -> str:
    """The cache mode of a disk: its own, else ``unsafe`` with snapshot, else ``writeback``."""
    if cache:
        return cache
    return "unsafe" if cfg.snapshot else "writeback"


class _Pci:
    """Hands out PCI slots, adding a bridge every :data:`DEV_PER_BUS` slots."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.bus = 1
        self.addr = 1
        args += ["-device", "pci-bridge,id=pci.1,chassis_nr=1"]

    def slot(self) -> str:
        where = f"bus=pci.{self.bus},addr=0x{self.addr:x}"
        self.addr += 1
        if self.addr == DEV_PER_BUS:
            self.addr = 1
            self.bus += 1
            self.args += ["-device", f"pci-bridge,id=pci.{self.bus},chassis_nr={self.bus}"]
        return where


def qemu_args(
    cfg: VMConfig,
    vm_id: int = 0,
    instance_path: str = "",
    uuid: str = "",
    *,
    taps: Sequence[str] = (),
    macs: Sequence[str] = (),
    snapshot_paths: Sequence[str] = (),
    hugepages: str = "",
) -> list[str]:
    """The qemu arguments (no binary, no overrides) for one VM, as 2.8 orders them."""
    inst = instance_path
    args: list[str] = ["-name", str(vm_id)]
    if cfg.machine:
        args += ["-M", cfg.machine]
    args += ["-m", str(cfg.memory), "-nographic"]
    args += ["-vnc", f"unix:{go_join(inst, 'vnc')}"]
    smp = str(cfg.vcpus)
    if cfg.cores:
        smp += f",cores={cfg.cores}"
    if cfg.threads:
        smp += f",threads={cfg.threads}"
    if cfg.sockets:
        smp += f",sockets={cfg.sockets}"
    args += ["-smp", smp]
    args += ["-qmp", f"unix:{go_join(inst, 'qmp')},server=on"]
    args += ["-vga", cfg.vga or "std", "-rtc", "clock=vm,base=utc"]
    args += ["-usb"]
    if cfg.usb_use_xhci:
        args += ["-device", "qemu-xhci,id=xhci"]
    else:
        args += ["-device", "usb-ehci,id=ehci"]
    args += ["-device", "usb-tablet,bus=usb-bus.0"]
    if cfg.tpm_socket:
        args += [
            "-chardev",
            f"socket,id=chrtpm,path={cfg.tpm_socket},nowait",
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-tis,tpmdev=tpm0",
        ]
    for i in range(cfg.serial_ports):
        path = go_join(inst, f"serial{i}")
        args += ["-chardev", f"socket,id=charserial{i},path={path},server=on,wait=off"]
        args += ["-device", f"isa-serial,chardev=charserial{i},id=serial{i}"]
    args += ["-pidfile", go_join(inst, "qemu.pid"), "-k", "en-us"]
    if cfg.cpu:
        args += ["-cpu", cfg.cpu]
    args += ["-net", "none", "-S"]
    if cfg.migrate:
        args += ["-incoming", f"exec:cat {cfg.migrate}"]
    if cfg.cdrom:
        args += ["-drive", f"file={cfg.cdrom},media=cdrom", "-boot", "once=d"]
    else:
        # the cdrom slot always exists, so `vm cdrom change` has a drive to fill
        args += ["-drive", "media=cdrom"]

    ahci = 0
    for i, disk in enumerate(cfg.disks):
        path = snapshot_paths[i] if i < len(snapshot_paths) and snapshot_paths[i] else disk.path
        cache = disk_cache(cfg, disk.cache)
        if disk.interface == "ahci":
            if ahci == 0:
                args += ["-device", "ahci,id=ahci"]
            args += ["-device", f"ide-hd,drive=ahci-drive-{ahci},bus=ahci.{ahci}"]
            args += [
                "-drive",
                f"id=ahci-drive-{ahci},file={path},media=disk,if=none,cache={cache}",
            ]
            ahci += 1
        else:
            iface = disk.interface or "ide"
            args += ["-drive", f"file={path},media=disk,if={iface},cache={cache}"]

    if cfg.kernel:
        args += ["-kernel", cfg.kernel]
    if cfg.initrd:
        args += ["-initrd", cfg.initrd]
    if cfg.append:
        args += ["-append", unescape_string(cfg.append)]

    pci = _Pci(args)
    for i, nic in enumerate(cfg.networks):
        tap = taps[i] if i < len(taps) else nic.tap
        mac = macs[i] if i < len(macs) else nic.mac
        args += ["-netdev", f"tap,id={tap},script=no,ifname={tap}"]
        args += ["-device", f"driver={nic.driver},netdev={tap},mac={mac},{pci.slot()}"]

    virtio_slot = -1
    if cfg.backchannel:
        virtio_slot += 1
        args += ["-device", f"virtio-serial-pci,id=virtio-serial{virtio_slot},{pci.slot()}"]
        cc = go_join(inst, "cc")
        args += ["-chardev", f"socket,id=charvserialCC,path={cc},server=on,wait=off"]
        args += [
            "-device",
            f"virtserialport,bus=virtio-serial{virtio_slot}.0,chardev=charvserialCC,"
            "id=charvserialCC,name=cc",
        ]
    for i, name in enumerate(virtio_port_names(cfg.virtio_ports)):
        if i % DEV_PER_VIRTIO == 0:
            virtio_slot += 1
            args += ["-device", f"virtio-serial-pci,id=virtio-serial{virtio_slot},{pci.slot()}"]
        path = go_join(inst, f"virtio-serial{i}")
        args += ["-chardev", f"socket,id=charvserial{i},path={path},server=on,wait=off"]
        args += [
            "-device",
            f"virtserialport,bus=virtio-serial{virtio_slot}.0,chardev=charvserial{i},"
            f"id=charvserial{i},name={name}",
        ]
    if hugepages:
        # 2.8 wrote "-mem-info" (no such QEMU option: every guest failed to start)
        args += ["-mem-path", hugepages]
    args += list(cfg.qemu_append)
    args += ["-uuid", uuid]
    return args


def final_args(cfg: VMConfig, args: Sequence[str]) -> list[str]:
    """``args`` after the config's ``qemu-override`` replacements."""
    return cfg.apply_qemu_overrides(args) if cfg.qemu_override else list(args)
