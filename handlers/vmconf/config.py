"""The ``vm config`` model: every field of minimega 2.8's VMConfig with its defaults.

A :class:`VMConfig` is what ``vm launch`` copies into each new VM, so it is a
``msgspec.Struct`` of JSON-friendly types and travels on the bus as is.
"""

from __future__ import annotations

import msgspec


class VMConfig(msgspec.Struct, kw_only=True):
    """One namespace's ``vm config`` (base, KVM and container parts)."""

    uuid: str = ""
    vcpus: int = 1
    memory: int = 2048
    snapshot: bool = True
    schedule: str = ""
    colocate: str = ""
    coschedule: int = -1
    backchannel: bool = True
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    qemu: str = "kvm"
    kernel: str = ""
    initrd: str = ""
    cdrom: str = ""
    migrate: str = ""
    cpu: str = "host"
    sockets: int = 0
    cores: int = 0
    threads: int = 0
    machine: str = ""
    serial_ports: int = 0
    virtio_ports: str = ""
    vga: str = "std"
    append: list[str] = msgspec.field(default_factory=list)
    usb_use_xhci: bool = True
    tpm_socket: str = ""
    qemu_append: list[str] = msgspec.field(default_factory=list)

    filesystem: str = ""
    hostname: str = ""
    init: list[str] = msgspec.field(default_factory=lambda: ["/init"])
    preinit: str = ""
    fifos: int = 0
    volume: dict[str, str] = msgspec.field(default_factory=dict)
