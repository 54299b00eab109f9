"""``vm info``: 2.8's columns, in order, and each value's text.

Every column exists for every VM so ``.columns`` and ``.filter`` work over the
table; a column that does not apply to the VM's type prints ``N/A`` as in 2.8.
The response's ``data`` holds one JSON object per VM (``State`` as 2.8's
integer) for JSON mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from megabus.handlers.language.gotime import format_seconds as go_duration
from megabus.handlers.model.config import go_bool, go_json_map, go_list
from megabus.handlers.model.vm import VM, VMType
from megabus.handlers.net import describe as qos_entries

if TYPE_CHECKING:
    from megabus.handlers.net import Bridges

#: ``vm info`` columns (without ``host``, which annotation adds).
COLUMNS = [
    "id", "name", "state", "uptime", "type", "uuid", "cc_active", "pid", "vlan", "bridge",
    "tap", "mac", "ip", "ip6", "qos", "qinq", "bond", "memory", "vcpus", "disks", "snapshot",
    "initrd", "kernel", "cdrom", "migrate", "append", "serial-ports", "virtio-ports",
    "vnc_port", "usb-use-xhci", "tpm-socket", "filesystem", "hostname", "init", "preinit",
    "fifo", "volume", "console_port", "tags",
]  # fmt: skip
#: ``vm info summary`` columns.
SUMMARY = ["id", "name", "state", "type", "uuid", "cc_active", "vlan"]

_KVM_ONLY = {
    "disks", "initrd", "kernel", "cdrom", "migrate", "append", "serial-ports",
    "virtio-ports", "vnc_port", "usb-use-xhci", "tpm-socket",
}  # fmt: skip
_CONTAINER_ONLY = {"filesystem", "hostname", "init", "preinit", "fifo", "volume", "console_port"}


@dataclass(frozen=True)
class InfoView:
    """What ``vm info`` reads of the node besides the VM itself."""

    #: 2.8's ``printVLAN``: the alias of a VLAN in a namespace (``ALIAS (N)``).
    print_vlan: Callable[[str, int], str]
    #: Whether the VM's agent is connected to the node's cc server.
    cc_active: Callable[[VM], bool]
    #: The node's bridge table, where the taps' qos settings live.
    bridges: Bridges | None = None


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _vlans(vm: VM, view: InfoView | None) -> str:
    """2.8's ``printVLAN`` per NIC: ``ALIAS (N)``, ``ns//ALIAS (N)``, ``N``, ``disconnected``."""
    out = []
    for nic in vm.config.networks:
        if nic.vlan < 0:
            out.append("disconnected")
        elif view is not None:
            out.append(view.print_vlan(vm.namespace, nic.vlan))
        else:
            out.append(nic.alias or str(nic.vlan))
    return _list(out)


def _bonded(vm: VM) -> set[int]:
    return {i for bond in vm.config.bonds for i in bond.interfaces}


def _qinq(vm: VM) -> str:
    """QinQ taps (``tap (vlan)``), bonded ones replaced by their QinQ bond."""
    nets = vm.config.networks
    bonded = _bonded(vm)
    items = [f"{n.tap} ({n.vlan})" for i, n in enumerate(nets) if n.qinq and i not in bonded]
    items += [f"{b.name} ({b.vlan})" for b in vm.config.bonds if b.qinq and b.name]
    return _list(items)


def _bonds(vm: VM) -> str:
    """``[bond (tap tap)]`` per bond."""
    nets = vm.config.networks
    items = []
    for bond in vm.config.bonds:
        taps = [nets[i].tap for i in bond.interfaces if 0 <= i < len(nets)]
        items.append(f"{bond.name} ({' '.join(taps)})")
    return _list(items)


def _runtime_attr(vm: VM, name: str, default: Any) -> Any:
    return getattr(vm.runtime, name, default)


_Cell = Callable[[VM, "InfoView | None"], str]

#: Each column's text, built once: a table of plain functions costs a dict
#: lookup per cell, where building 39 closures per cell made ``vm info`` of
#: 100 VMs take tens of milliseconds.
_CELLS: dict[str, _Cell] = {
    "id": lambda vm, view: str(vm.id),
    "name": lambda vm, view: vm.name,
    "state": lambda vm, view: str(vm.state),
    "uptime": lambda vm, view: go_duration(vm.uptime()),
    "type": lambda vm, view: str(vm.type),
    "uuid": lambda vm, view: vm.uuid,
    "cc_active": lambda vm, view: go_bool(view.cc_active(vm) if view is not None else False),
    "pid": lambda vm, view: str(vm.pid),
    "vlan": _vlans,
    "bridge": lambda vm, view: _list([n.bridge for n in vm.config.networks]),
    "tap": lambda vm, view: _list([n.tap for n in vm.config.networks]),
    "mac": lambda vm, view: _list([n.mac for n in vm.config.networks]),
    "ip": lambda vm, view: _list([n.ip4 for n in vm.config.networks]),
    "ip6": lambda vm, view: _list([n.ip6 for n in vm.config.networks]),
    "qos": lambda vm, view: _list(qos_entries(vm, view.bridges if view is not None else None)),
    "qinq": lambda vm, view: _qinq(vm),
    "bond": lambda vm, view: _bonds(vm),
    "memory": lambda vm, view: str(vm.config.memory),
    "vcpus": lambda vm, view: str(vm.config.vcpus),
    "disks": lambda vm, view: f"[{' '.join(d.spec() for d in vm.config.disks)}]",
    "snapshot": lambda vm, view: go_bool(vm.config.snapshot),
    "initrd": lambda vm, view: vm.config.initrd,
    "kernel": lambda vm, view: vm.config.kernel,
    "cdrom": lambda vm, view: str(_runtime_attr(vm, "cdrom", vm.config.cdrom)),
    "migrate": lambda vm, view: vm.config.migrate,
    "append": lambda vm, view: go_list(vm.config.append),
    "serial-ports": lambda vm, view: str(vm.config.serial_ports),
    "virtio-ports": lambda vm, view: vm.config.virtio_ports,
    "vnc_port": lambda vm, view: str(vm.vnc_port),
    "usb-use-xhci": lambda vm, view: go_bool(vm.config.usb_use_xhci),
    "tpm-socket": lambda vm, view: vm.config.tpm_socket,
    "filesystem": lambda vm, view: vm.config.filesystem,
    "hostname": lambda vm, view: vm.config.hostname or vm.name,
    "init": lambda vm, view: go_list(vm.config.init),
    "preinit": lambda vm, view: vm.config.preinit,
    "fifo": lambda vm, view: str(vm.config.fifos),
    "volume": lambda vm, view: go_json_map(vm.config.volume),
    "console_port": lambda vm, view: str(_runtime_attr(vm, "console_port", 0)),
    "tags": lambda vm, view: go_json_map(vm.tags),
}


def _na(vm: VM, view: InfoView | None) -> str:
    return "N/A"


def _cells(vm_type: VMType, columns: list[str]) -> list[_Cell]:
    """The cell function of each column for one VM type (``N/A`` where it does not apply)."""
    other = _CONTAINER_ONLY if vm_type is VMType.KVM else _KVM_ONLY
    return [_na if c in other else _CELLS.get(c, _na) for c in columns]


def value(vm: VM, column: str, view: InfoView | None = None) -> str:
    """The text of one ``vm info`` cell; ``view`` is what the node knows besides the VM."""
    return _cells(vm.type, [column])[0](vm, view)


def rows(vms: list[VM], columns: list[str], view: InfoView | None = None) -> list[list[str]]:
    """One row per VM."""
    by_type: dict[VMType, list[_Cell]] = {}
    out = []
    for vm in vms:
        cells = by_type.get(vm.type)
        if cells is None:
            cells = by_type[vm.type] = _cells(vm.type, columns)
        out.append([cell(vm, view) for cell in cells])
    return out


def asked(columns: list[str], typed: list[str] | None) -> list[str]:
    """The columns of ``columns`` that a ``.columns`` of ``typed`` names could pick.

    Every column a typed name equals or starts (``.columns`` matches by
    prefix) is kept, so the selection still finds the same column, or the
    same ambiguity or absence; ``None`` (no ``.columns``) keeps them all.
    """
    if typed is None:
        return columns
    return [c for c in columns if any(c.lower().startswith(t) for t in typed)]


def data(vm: VM) -> dict[str, Any]:
    """The JSON object of one VM (2.8's ``Data``: exported fields, ``State`` an integer)."""
    return {
        "ID": vm.id,
        "Name": vm.name,
        "Namespace": vm.namespace,
        "Host": "",
        "State": int(vm.state),
        "Type": str(vm.type),
        "UUID": vm.uuid,
        "Pid": vm.pid,
        "Tags": dict(vm.tags),
        "Uptime": vm.uptime(),
        "VNCPort": vm.vnc_port,
        # the VM's own config, not a copy (4 of the 7 ms this took for 1000 VMs):
        # the reply is encoded before anything else runs, or (fanned out) shows
        # the config as it is when the replies are gathered
        "Config": vm.config,
    }
