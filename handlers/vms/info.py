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


def value(vm: VM, column: str, view: InfoView | None = None) -> str:
    """The text of one ``vm info`` cell; ``view`` is what the node knows besides the VM."""
    cfg = vm.config
    if vm.type is VMType.KVM and column in _CONTAINER_ONLY:
        return "N/A"
    if vm.type is VMType.CONTAINER and column in _KVM_ONLY:
        return "N/A"
    nets = cfg.networks
    runtime = vm.runtime
    simple: dict[str, Callable[[], str]] = {
        "id": lambda: str(vm.id),
        "name": lambda: vm.name,
        "state": lambda: str(vm.state),
        "uptime": lambda: go_duration(vm.uptime()),
        "type": lambda: str(vm.type),
        "uuid": lambda: vm.uuid,
        "cc_active": lambda: go_bool(view.cc_active(vm) if view is not None else False),
        "pid": lambda: str(vm.pid),
        "vlan": lambda: _vlans(vm, view),
        "bridge": lambda: _list([n.bridge for n in nets]),
        "tap": lambda: _list([n.tap for n in nets]),
        "mac": lambda: _list([n.mac for n in nets]),
        "ip": lambda: _list([n.ip4 for n in nets]),
        "ip6": lambda: _list([n.ip6 for n in nets]),
        "qos": lambda: _list(qos_entries(vm, view.bridges if view is not None else None)),
        "qinq": lambda: _qinq(vm),
        "bond": lambda: _bonds(vm),
        "memory": lambda: str(cfg.memory),
        "vcpus": lambda: str(cfg.vcpus),
        "disks": lambda: f"[{' '.join(d.spec() for d in cfg.disks)}]",
        "snapshot": lambda: go_bool(cfg.snapshot),
        "initrd": lambda: cfg.initrd,
        "kernel": lambda: cfg.kernel,
        "cdrom": lambda: getattr(runtime, "cdrom", cfg.cdrom),
        "migrate": lambda: cfg.migrate,
        "append": lambda: go_list(cfg.append),
        "serial-ports": lambda: str(cfg.serial_ports),
        "virtio-ports": lambda: cfg.virtio_ports,
        "vnc_port": lambda: str(vm.vnc_port),
        "usb-use-xhci": lambda: go_bool(cfg.usb_use_xhci),
        "tpm-socket": lambda: cfg.tpm_socket,
        "filesystem": lambda: cfg.filesystem,
        "hostname": lambda: cfg.hostname or vm.name,
        "init": lambda: go_list(cfg.init),
        "preinit": lambda: cfg.preinit,
        "fifo": lambda: str(cfg.fifos),
        "volume": lambda: go_json_map(cfg.volume),
        "console_port": lambda: str(getattr(runtime, "console_port", 0)),
        "tags": lambda: go_json_map(vm.tags),
    }
    fn = simple.get(column)
    return fn() if fn is not None else "N/A"


def rows(vms: list[VM], columns: list[str], view: InfoView | None = None) -> list[list[str]]:
    """One row per VM."""
    return [[value(vm, c, view) for c in columns] for vm in vms]


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
        "Config": vm.config.copy(),
    }
