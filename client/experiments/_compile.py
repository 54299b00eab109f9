"""An experiment as minimega command lines, each with the place in the file it came from."""

from __future__ import annotations

from typing import Any

import msgspec

from megabus.client._methods import quote
from megabus.client.experiments._locate import Path
from megabus.client.experiments._model import Loaded, VmSpec, config_lines, start_order

#: The VM tag that records which spec a VM was launched from.
TAG = "mb-experiment"


class Step(msgspec.Struct, frozen=True):
    """One command line, run in the experiment's namespace unless ``root``."""

    line: str
    #: Where in the file it comes from.
    where: Path
    #: Run outside the namespace (``clear namespace``, ``bridge destroy``).
    root: bool = False


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(quote(str(v)) for v in value)
    return quote(str(value))


def _target(names: list[str]) -> str:
    return ",".join(names)


def cc_prefix(loaded: Loaded, name: str) -> str:
    """The ``cc prefix`` of one VM's start-up commands (deleted with the VM)."""
    return f"{loaded.experiment.name}-{name}"


def setup(
    loaded: Loaded, have: dict[str, str] | None = None, hosts: list[str] | None = None
) -> list[Step]:
    """Hosts and pinned VLANs: the namespace's hosts become the file's (``hosts``: those it
    has now), pinned VLANs not already as ``have`` says are added."""
    exp = loaded.experiment
    out = []
    if exp.hosts:
        # adding first: an unknown host fails before anything changed
        out.append(Step(f"ns add-hosts {_target(exp.hosts)}", ("hosts",)))
        extra = sorted(set(hosts or ()) - set(exp.hosts))
        if extra:
            out.append(Step(f"ns del-hosts {_target(extra)}", ("hosts",)))
    for alias, vlan in exp.vlans.items():
        if isinstance(vlan, int) and (have or {}).get(alias) != str(vlan):
            out.append(Step(f"vlans add {quote(alias)} {vlan}", ("vlans", alias)))
    return out


def launch(loaded: Loaded, vm: VmSpec, names: list[str]) -> list[Step]:
    """``vm config`` of ``vm`` and the launch of ``names`` (some or all of its VMs)."""
    exp = loaded.experiment
    where: Path = ("vm", exp.vm.index(vm))
    out = [Step("clear vm config", where)]
    for key, value, path in config_lines(exp, vm):
        out.append(Step(f"vm config {key} {_value(value)}", path))
    nets = vm.nets()
    if nets:
        bridge = f"{exp.bridge}," if exp.bridge else ""
        specs = " ".join(quote(f"{bridge}{alias}") for alias in nets)
        out.append(Step(f"vm config net {specs}", (*where, "net")))
    if vm.host:
        out.append(Step(f"vm config schedule {quote(vm.host)}", (*where, "host")))
    out.append(Step(f"vm config tags {TAG} {vm.digest(exp)}", where))
    out.append(Step(f"vm launch {vm.type} {_target(names)}", where))
    return out


def router(loaded: Loaded, vm: VmSpec) -> list[Step]:
    """The router's minirouter config and its commit."""
    assert vm.router is not None
    where: Path = ("vm", loaded.experiment.vm.index(vm), "router")
    r, name, nets = vm.router, quote(vm.name), vm.nets()
    out = []
    for alias, address in r.interfaces.items():
        out.append(
            Step(
                f"router {name} interface {nets.index(alias)} {quote(address)}",
                (*where, "interfaces", alias),
            )
        )
    for alias, dhcp in r.dhcp.items():
        listen = quote(r.interfaces[alias].split("/")[0])
        at: Path = (*where, "dhcp", alias)
        if dhcp.range is not None:
            low, high = dhcp.range
            out.append(Step(f"router {name} dhcp {listen} range {quote(low)} {quote(high)}", at))
        if dhcp.router:
            out.append(Step(f"router {name} dhcp {listen} router {quote(dhcp.router)}", at))
        if dhcp.dns:
            out.append(Step(f"router {name} dhcp {listen} dns {quote(dhcp.dns)}", at))
        for mac, ip in dhcp.static.items():
            out.append(Step(f"router {name} dhcp {listen} static {quote(mac)} {quote(ip)}", at))
    for i, route in enumerate(r.routes):
        out.append(
            Step(
                f"router {name} route static {quote(route.network)} {quote(route.next_hop)}",
                (*where, "routes", i),
            )
        )
    for ip, host in r.dns.items():
        out.append(Step(f"router {name} dns {quote(ip)} {quote(host)}", (*where, "dns", ip)))
    for i, rule in enumerate(r.fw):
        out.append(Step(f"router {name} fw {rule}", (*where, "fw", i)))
    out.append(Step(f"router {name} commit", where))
    return out


def start(loaded: Loaded, vm: VmSpec, names: list[str]) -> list[Step]:
    return [Step(f"vm start {_target(names)}", ("vm", loaded.experiment.vm.index(vm)))]


def cc(loaded: Loaded, vm: VmSpec, names: list[str]) -> list[Step]:
    """Each VM's start-up cc commands, under a prefix of its own, for it alone."""
    if not vm.cc:
        return []
    where: Path = ("vm", loaded.experiment.vm.index(vm), "cc")
    out = []
    for name in names:
        out.append(Step(f"cc prefix {quote(cc_prefix(loaded, name))}", where))
        out.append(Step(f"cc filter name={quote(name)}", where))
        out.extend(Step(f"cc {line}", (*where, i)) for i, line in enumerate(vm.cc))
    out += [Step("clear cc filter", where), Step("clear cc prefix", where)]
    return out


def remove(loaded: Loaded, kill: list[str], with_cc: list[str], *, flush: bool) -> list[Step]:
    """Forget the cc commands of ``with_cc``, kill ``kill``, flush (the dead ones too)."""
    out = [Step(f"cc delete command {quote(cc_prefix(loaded, name))}", ()) for name in with_cc]
    if kill:
        out.append(Step(f"vm kill {_target(kill)}", ()))
    if flush or kill:
        out.append(Step("vm flush", ()))
    return out


def plan(loaded: Loaded) -> list[Step]:
    """Every command ``up`` runs on a namespace where nothing of the experiment exists yet."""
    exp = loaded.experiment
    out = setup(loaded)
    for vm in exp.vm:
        out += launch(loaded, vm, vm.names())
    for vm in exp.vm:
        if vm.router is not None:
            out += router(loaded, vm)
    for level in start_order(exp):
        for vm in level:
            out += start(loaded, vm, vm.names())
            out += cc(loaded, vm, vm.names())
    return out


def teardown(loaded: Loaded) -> list[Step]:
    """``down``: the namespace (its VMs, VLANs, cc state), then the experiment's bridge."""
    exp = loaded.experiment
    out = [Step(f"clear namespace {quote(exp.name)}", ("name",), root=True)]
    if exp.bridge:
        out.append(Step(f"bridge destroy {quote(exp.bridge)}", ("bridge",), root=True))
    return out


__all__ = ["TAG", "Step", "cc", "launch", "plan", "remove", "router", "setup", "start", "teardown"]
