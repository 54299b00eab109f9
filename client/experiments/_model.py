"""An experiment file: its TOML read into typed structs, checked, each error at its line.

::

    name = "lab"                      # the namespace the experiment lives in (default: file name)
    bridge = "labbr"                  # Open vSwitch bridge of its NICs (default: the node's)
    hosts = ["n1"]                    # the namespace's hosts (default: the node's choice)

    [vlans]                           # VLAN aliases, declared before use: a number, or "auto"
    lan1 = "auto"
    lan2 = 102

    [defaults]                        # vm config for every VM (a VM's config wins)
    filesystem = "/images/minicccfs"

    [[vm]]
    name = "r0"
    net = ["lan1", "lan2"]
    [vm.router]                       # a router VM: minirouter's config, committed at start
    interfaces = { lan1 = "10.0.1.1/24", lan2 = "10.0.2.1/24" }
    dhcp = { lan1 = { range = ["10.0.1.100", "10.0.1.199"], router = "10.0.1.1" } }

    [[vm]]
    name = "a"                        # count = 3: a0, a1, a2
    count = 3
    net = ["lan1"]
    after = ["r0"]                    # started once r0 is
    cc = ["exec dhclient -1 veth0"]   # cc commands for each of them at start
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path as FilePath
from typing import Any, Literal

import msgspec

from megabus.bus.errors import MegabusError
from megabus.client.experiments._locate import Path, line_of, locate

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ExperimentError(MegabusError):
    """A bad experiment file; the text is ``FILE:LINE: what``.

    Attributes:
        file: the file.
        line: the line (0 when the error belongs to no line).
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line
        self.message = message


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Dhcp(_Spec):
    """DHCP on one router interface (``router <vm> dhcp <its address> ...``)."""

    range: tuple[str, str] | None = None
    router: str = ""
    dns: str = ""
    #: MAC -> address.
    static: dict[str, str] = {}


class Route(_Spec):
    network: str
    next_hop: str


class RouterSpec(_Spec):
    """A router VM's minirouter config."""

    #: VLAN alias -> address/mask, one per NIC of the VM on that VLAN.
    interfaces: dict[str, str]
    #: By VLAN alias: DHCP served on that interface.
    dhcp: dict[str, Dhcp] = {}
    routes: list[Route] = []
    #: Address -> name the router answers DNS queries with.
    dns: dict[str, str] = {}
    #: Lines after ``router <vm> fw`` (``default drop``, ``accept in 0 10.0.2.0/24 22 tcp``).
    fw: list[str] = []


class VmSpec(_Spec):
    """One VM, or ``count`` of them named ``<name>0``... ``<name><count-1>``."""

    name: str
    type: Literal["container", "kvm"] = "container"
    count: int = 0
    #: VLAN aliases, one NIC each.
    net: list[str] = []
    #: ``vm config <key> <value>`` (memory, vcpus, filesystem, kernel, preinit...).
    config: dict[str, str | int | bool | list[str]] = {}
    #: cc commands (``exec ...``, ``background ...``, ``send ...``) for each at start.
    cc: list[str] = []
    #: The node to run on (``vm config schedule``).
    host: str = ""
    #: VMs started before these.
    after: list[str] = []
    router: RouterSpec | None = None

    def names(self) -> list[str]:
        return [f"{self.name}{i}" for i in range(self.count)] if self.count else [self.name]

    def digest(self, exp: Experiment) -> str:
        """What the node records of this spec (with what it takes from the whole file)."""
        mine = msgspec.structs.replace(self, count=0, after=[])
        data = msgspec.json.encode(
            [mine, exp.bridge, {v: exp.vlans[v] for v in self.nets()}, exp.defaults]
        )
        return hashlib.sha256(data).hexdigest()[:16]

    def nets(self) -> list[str]:
        if self.net or self.router is None:
            return self.net
        return list(self.router.interfaces)


class Experiment(_Spec):
    name: str = ""
    bridge: str = ""
    hosts: list[str] = []
    vlans: dict[str, int | Literal["auto"]] = {}
    defaults: dict[str, str | int | bool | list[str]] = {}
    vm: list[VmSpec] = []


class Loaded(msgspec.Struct, frozen=True):
    """An experiment and where its parts are in its file."""

    experiment: Experiment
    file: str
    lines: dict[Path, int]

    def error(self, path: Path, message: str) -> ExperimentError:
        return ExperimentError(self.file, line_of(self.lines, path), message)

    def line(self, path: Path) -> int:
        return line_of(self.lines, path)


_PATH = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _msgspec_path(text: str) -> Path:
    out: list[str | int] = []
    for name, index in _PATH.findall(text):
        out.append(int(index) if index else name)
    return tuple(out)


def load(file: str | FilePath) -> Loaded:
    """Read and check an experiment file.

    Raises:
        ExperimentError: the file cannot be read, is no TOML, has an unknown
            field or a bad value, a VLAN used before it is declared, a VM named
            twice or a cycle of ``after``; the text names the line.
    """
    name = str(file)
    try:
        text = FilePath(file).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as err:
        raise ExperimentError(name, 0, f"cannot read: {err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column \d+\)", str(err))
        raise ExperimentError(name, int(m.group(1)) if m else 0, str(err)) from None
    lines = locate(text)
    try:
        exp = msgspec.convert(raw, Experiment)
    except msgspec.ValidationError as err:
        message, _, where = str(err).rpartition(" - at `")
        path = _msgspec_path(where.rstrip("`")) if message else ()
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            path = (*path, unknown.group(1))
            message = f"unknown field `{unknown.group(1)}`"
        raise ExperimentError(name, line_of(lines, path), message or str(err)) from None
    if not exp.name:
        exp = msgspec.structs.replace(exp, name=FilePath(file).stem)
    loaded = Loaded(exp, name, lines)
    _check(loaded)
    return loaded


def _check(loaded: Loaded) -> None:
    exp = loaded.experiment
    if not _NAME.match(exp.name):
        raise loaded.error(("name",), f"invalid experiment name {exp.name!r}")
    for alias, vlan in exp.vlans.items():
        if isinstance(vlan, int) and not 0 < vlan < 4096:
            raise loaded.error(("vlans", alias), f"invalid VLAN {vlan} for {alias} (1-4095)")
    seen: dict[str, int] = {}
    for i, vm in enumerate(exp.vm):
        where: Path = ("vm", i)
        if not _NAME.match(vm.name):
            raise loaded.error((*where, "name"), f"invalid VM name {vm.name!r}")
        if vm.count < 0:
            raise loaded.error((*where, "count"), "count must not be negative")
        for name in vm.names():
            if name in seen:
                raise loaded.error(
                    (*where, "name"), f"VM {name} is already declared at line {seen[name]}"
                )
            seen[name] = loaded.line((*where, "name"))
        _check_nets(loaded, where, vm)
        if vm.router is not None:
            _check_router(loaded, where, vm)
    _check_after(loaded, seen)


def _check_nets(loaded: Loaded, where: Path, vm: VmSpec) -> None:
    vlans = loaded.experiment.vlans
    used: list[tuple[str, Path]] = [(v, (*where, "net", j)) for j, v in enumerate(vm.net)]
    if vm.router is not None:
        used += [(v, (*where, "router", "interfaces", v)) for v in vm.router.interfaces]
        used += [(v, (*where, "router", "dhcp", v)) for v in vm.router.dhcp]
    for alias, path in used:
        if alias not in vlans:
            raise loaded.error(path, f"VLAN {alias!r} is not declared in [vlans]")
        declared = loaded.line(("vlans", alias))
        if declared > loaded.line(path):
            raise loaded.error(
                path, f"VLAN {alias!r} is used before it is declared (line {declared})"
            )


def _check_router(loaded: Loaded, where: Path, vm: VmSpec) -> None:
    assert vm.router is not None
    if vm.count:
        raise loaded.error((*where, "count"), "a router is one VM: no count")
    nets = vm.nets()
    for alias in vm.router.interfaces:
        if alias not in nets:
            raise loaded.error(
                (*where, "router", "interfaces", alias), f"router has no NIC on VLAN {alias!r}"
            )
    for alias in vm.router.dhcp:
        if alias not in vm.router.interfaces:
            raise loaded.error(
                (*where, "router", "dhcp", alias), f"DHCP on {alias!r}, which has no interface"
            )


def _check_after(loaded: Loaded, names: dict[str, int]) -> None:
    exp = loaded.experiment
    groups = {vm.name: i for i, vm in enumerate(exp.vm)}
    for i, vm in enumerate(exp.vm):
        for j, other in enumerate(vm.after):
            if other not in groups and other not in names:
                raise loaded.error(("vm", i, "after", j), f"after: no VM {other!r}")
    # a cycle of `after`: depth-first, reported at the VM that closes it
    state: dict[int, int] = {}

    def visit(i: int, trail: list[str]) -> None:
        state[i] = 1
        for other in exp.vm[i].after:
            j = groups.get(other, groups.get(_group_of(exp, other), -1))
            if state.get(j) == 1:
                cycle = " -> ".join([*trail[trail.index(exp.vm[j].name) :], exp.vm[j].name])
                raise loaded.error(("vm", i, "after"), f"cycle in after: {cycle}")
            if j >= 0 and j not in state:
                visit(j, [*trail, exp.vm[j].name])
        state[i] = 2

    for i, vm in enumerate(exp.vm):
        if i not in state:
            visit(i, [vm.name])


def _group_of(exp: Experiment, name: str) -> str:
    for vm in exp.vm:
        if name in vm.names():
            return vm.name
    return ""


def start_order(exp: Experiment) -> list[list[VmSpec]]:
    """The VMs in levels: each after every VM it names (checked acyclic by :func:`load`)."""
    done: set[str] = set()
    levels: list[list[VmSpec]] = []
    left = list(exp.vm)
    while left:
        level = [vm for vm in left if all(_group_of(exp, a) in done or a in done for a in vm.after)]
        levels.append(level)
        done.update(vm.name for vm in level)
        left = [vm for vm in left if vm not in level]
    return levels


def config_lines(exp: Experiment, vm: VmSpec) -> list[tuple[str, Any, Path]]:
    """``(key, value, where)`` of the VM's ``vm config``, defaults first."""
    out: list[tuple[str, Any, Path]] = [
        (k, v, ("defaults", k)) for k, v in exp.defaults.items() if k not in vm.config
    ]
    i = exp.vm.index(vm)
    out += [(k, v, ("vm", i, "config", k)) for k, v in vm.config.items()]
    return out


__all__ = [
    "Dhcp",
    "Experiment",
    "ExperimentError",
    "Loaded",
    "Route",
    "RouterSpec",
    "VmSpec",
    "config_lines",
    "load",
    "start_order",
]
