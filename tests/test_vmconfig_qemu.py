"""What the QEMU binary reports (NIC drivers, CPUs, machines), asked once and cached."""

from __future__ import annotations

import shutil

import pytest

from megabus.bus.errors import CommandError
from megabus.handlers.model import qemu_info

needs_kvm = pytest.mark.skipif(shutil.which("kvm") is None, reason="qemu-system-x86 not installed")

DEVICE_HELP = """Storage devices:
name "ide-hd", bus IDE

Network devices:
name "e1000", bus PCI, alias "e1000-82540em", desc "Intel Gigabit Ethernet"
name "virtio-net-pci", bus PCI, alias "virtio-net"

Input devices:
name "usb-kbd", bus usb-bus
"""


def test_parse_nics_reads_only_the_network_section() -> None:
    assert qemu_info.parse_nics(DEVICE_HELP) == {"e1000", "virtio-net-pci"}
    assert qemu_info.parse_nics("nothing here") == frozenset()


def test_parse_cpus_and_machines() -> None:
    assert qemu_info.parse_cpus("Available CPUs:\nx86 host   KVM\nx86 qemu64\n\nflags") == {
        "host",
        "qemu64",
    }
    assert qemu_info.parse_machines("Supported machines are:\npc  Standard PC\nq35 Q35\n") == {
        "pc",
        "q35",
    }


@needs_kvm
async def test_kvm_reports_e1000() -> None:
    qemu_info.clear_cache()
    nics = await qemu_info.nics("kvm")
    assert {"e1000", "virtio-net-pci", "rtl8139"} <= nics
    # a second ask is answered from the cache
    assert await qemu_info.nics("kvm") is nics


async def test_missing_binary_gives_no_drivers() -> None:
    assert await qemu_info.nics("megabus-no-such-qemu") == frozenset()


async def test_missing_path_is_an_error() -> None:
    with pytest.raises(
        CommandError,
        match=r"^unable to determine valid QEMU nics -- fork/exec /nonexistent/kvm: no such file",
    ):
        await qemu_info.nics("/nonexistent/kvm")
    with pytest.raises(CommandError, match=r"try configuring machine first$"):
        await qemu_info.cpus("/nonexistent/kvm")
