"""The VM record, the VM table's targeting and the 2.8 qemu line (no QEMU needed)."""

from __future__ import annotations

import pytest

from megabus.bus.errors import CommandError
from megabus.handlers.model.config import QemuOverride, VMConfig, unescape_string
from megabus.handlers.model.diskspec import DiskConfig
from megabus.handlers.model.netspec import NetConfig
from megabus.handlers.model.table import VMTable
from megabus.handlers.model.vm import VM, VMState, VMType, can_transition
from megabus.handlers.vms._qemu_args import final_args, qemu_args

#: 2.8's own output for a default VM (`vm config qemu-override`, reference 3.4).
DEFAULT_LINE = (
    "-name 0 -m 2048 -nographic -vnc unix:vnc -smp 1 -qmp unix:qmp,server=on -vga std "
    "-rtc clock=vm,base=utc -usb -device qemu-xhci,id=xhci -device usb-tablet,bus=usb-bus.0 "
    "-pidfile qemu.pid -k en-us -cpu host -net none -S -drive media=cdrom "
    "-device pci-bridge,id=pci.1,chassis_nr=1 "
    "-device virtio-serial-pci,id=virtio-serial0,bus=pci.1,addr=0x1 "
    "-chardev socket,id=charvserialCC,path=cc,server=on,wait=off "
    "-device virtserialport,bus=virtio-serial0.0,chardev=charvserialCC,id=charvserialCC,name=cc "
    "-uuid"
)


def test_default_config_gives_the_exact_28_line() -> None:
    assert unescape_string(qemu_args(VMConfig())) == DEFAULT_LINE


def test_instance_paths_ids_and_uuid_fill_in() -> None:
    args = qemu_args(VMConfig(), 7, "/tmp/minimega/7", "u-1")
    assert args[:2] == ["-name", "7"]
    assert "unix:/tmp/minimega/7/qmp,server=on" in args
    assert args[-2:] == ["-uuid", "u-1"]
    assert "/tmp/minimega/7/qemu.pid" in args


def test_optional_parts_in_28_order() -> None:
    cfg = VMConfig(
        machine="pc",
        cores=2,
        sockets=1,
        serial_ports=1,
        cdrom="/x.iso",
        migrate="/m",
        kernel="/k",
        initrd="/i",
        append=["console=ttyS0", "quiet"],
        usb_use_xhci=False,
        disks=[DiskConfig(path="/d.qcow2"), DiskConfig(path="/e.img", interface="virtio")],
        virtio_ports="2",
        qemu_append=["-foo"],
        snapshot=False,
    )
    line = unescape_string(qemu_args(cfg, 3, "/b/3", "u"))
    assert line.startswith(
        "-name 3 -M pc -m 2048 -nographic -vnc unix:/b/3/vnc -smp 1,cores=2,sockets=1 "
    )
    assert "-device usb-ehci,id=ehci" in line
    assert (
        "-chardev socket,id=charserial0,path=/b/3/serial0,server=on,wait=off "
        "-device isa-serial,chardev=charserial0,id=serial0" in line
    )
    assert '-S -incoming "exec:cat /m" -drive file=/x.iso,media=cdrom -boot once=d' in line
    assert "-drive file=/d.qcow2,media=disk,if=ide,cache=writeback" in line
    assert "-drive file=/e.img,media=disk,if=virtio,cache=writeback" in line
    assert '-kernel /k -initrd /i -append "console=ttyS0 quiet"' in line
    # cc first, then one controller for the two named ports, then qemu-append
    assert "virtio-serial-pci,id=virtio-serial1,bus=pci.1,addr=0x2" in line
    assert "name=virtio-serial1 -foo -uuid u" in line


def test_nics_take_pci_slots_and_a_new_bridge_every_32() -> None:
    nets = [NetConfig(alias="1", vlan=1, mac=f"00:00:00:00:00:{i:02x}") for i in range(32)]
    args = qemu_args(VMConfig(networks=nets), taps=[f"mega_tap{i}" for i in range(32)])
    line = " ".join(args)
    assert "-netdev tap,id=mega_tap0,script=no,ifname=mega_tap0" in line
    assert "driver=e1000,netdev=mega_tap0,mac=00:00:00:00:00:00,bus=pci.1,addr=0x1" in line
    assert "pci-bridge,id=pci.2,chassis_nr=2" in line
    assert "netdev=mega_tap31,mac=00:00:00:00:00:1f,bus=pci.2,addr=0x1" in line


def test_overrides_replace_on_the_joined_line() -> None:
    cfg = VMConfig(qemu_override=[QemuOverride(match="-m 2048", repl="-m 512")])
    assert "-m 512" in " ".join(final_args(cfg, qemu_args(cfg)))


def test_snapshot_overlays_replace_disk_paths() -> None:
    cfg = VMConfig(disks=[DiskConfig(path="/src.qcow2")])
    line = " ".join(qemu_args(cfg, snapshot_paths=["/b/0/disk-0.qcow2"]))
    assert "-drive file=/b/0/disk-0.qcow2,media=disk,if=ide,cache=unsafe" in line


def test_state_transitions_follow_28() -> None:
    assert can_transition(VMState.BUILDING, VMState.RUNNING)
    assert can_transition(VMState.QUIT, VMState.BUILDING)
    assert not can_transition(VMState.QUIT, VMState.RUNNING)
    assert not can_transition(VMState.RUNNING, VMState.BUILDING)
    vm = _vm(0, "a")
    seen: list[tuple[VMState, VMState]] = []
    vm.listeners.append(lambda v, old: seen.append((old, v.state)))
    assert vm.set_state(VMState.RUNNING)
    assert not vm.set_state(VMState.BUILDING)
    vm.set_error("boom")
    assert vm.state is VMState.ERROR
    assert vm.tags["error"] == "boom"
    assert seen == [(VMState.BUILDING, VMState.RUNNING), (VMState.RUNNING, VMState.ERROR)]
    assert str(VMState.PAUSED) == "PAUSED"


def _vm(vm_id: int, name: str, ns: str = "minimega") -> VM:
    return VM(vm_id, name, ns, VMType.KVM, VMConfig(), f"uuid-{vm_id}", f"/b/{vm_id}")


def test_ids_are_per_node_and_names_per_namespace() -> None:
    table = VMTable()
    assert [table.new_id() for _ in range(3)] == [0, 1, 2]
    assert [table.unnamed("a"), table.unnamed("a"), table.unnamed("b")] == ["vm-0", "vm-1", "vm-0"]


async def test_apply_targets_names_ids_ranges_and_all() -> None:
    table = VMTable()
    for i, name in enumerate(["foo0", "foo1", "foo2"]):
        table.add(_vm(i, name))
    table.add(_vm(3, "foo0", ns="other"))
    hit: list[int] = []

    async def touch(vm: VM, wild: bool) -> bool:
        hit.append(vm.id)
        return True

    await table.apply("minimega", "foo[0-1]", touch)
    await table.apply("minimega", "2", touch)
    await table.apply("minimega", "all", touch)
    assert sorted(hit) == [0, 0, 1, 1, 2, 2]
    assert table.find("minimega", "uuid-1") is table.vms[1]
    assert table.find("minimega", "3") is None


async def test_apply_errors_have_28_texts() -> None:
    table = VMTable()
    table.add(_vm(0, "foo"))

    async def never(vm: VM, wild: bool) -> bool:
        return False

    async def fail(vm: VM, wild: bool) -> bool:
        raise CommandError("broken")

    with pytest.raises(CommandError, match=r"^vm not found: bar$"):
        await table.apply("minimega", "bar", never)
    with pytest.raises(CommandError, match=r"^VM state error: foo$"):
        await table.apply("minimega", "foo", never)
    with pytest.raises(CommandError, match=r"^broken$"):
        await table.apply("minimega", "foo", fail)
    # several targets: missing ones are only logged
    await table.apply("minimega", "foo,bar", never)
    with pytest.raises(CommandError, match="unterminated"):
        await table.apply("minimega", "foo[", never)
