"""The experiment as a graph: 2.8's ``viz`` dot text, from ``vm info``'s data.

``viz <file>`` (2.8's ``dot.go``) writes a graphviz ``graph``: one filled node
per VM, named ``"host:name:id:ip:ip6"`` and coloured by state, an edge to each
VLAN it has a NIC on, then each VLAN once. Go wrote the VLANs in map order
(random); they are sorted here.

The web page and ``megabus viz`` draw :func:`picture`: the same nodes and
edges, with what 2.8's text leaves out: each host a frame around its VMs,
routers (VMs that ``router`` configured) as boxes, VLANs as labelled ovals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

#: The VM tag 2.8 sets on a VM when it becomes a router (its value is the VM's
#: ID); here so that the graph, below the routers engine, can read it too.
ROUTER_TAG = "minirouter"

#: 2.8's ``stateToColor``, by the ``State`` bit of ``vm info``'s data.
STATE_COLORS = {1: "yellow", 2: "green", 4: "yellow", 8: "blue", 16: "red"}


@dataclass(frozen=True)
class TopoVM:
    """What the graph shows of one VM."""

    host: str
    name: str
    id: int
    ip: str
    ip6: str
    state: int
    vlans: tuple[int, ...]
    #: ``router`` configured it (a minirouter).
    router: bool = False

    @property
    def text(self) -> str:
        """2.8's node name."""
        return f"{self.host}:{self.name}:{self.id}:{self.ip}:{self.ip6}"

    @property
    def label(self) -> str:
        """2.8's node name in quotes, as 2.8 wrote it (a quote in a name is not escaped)."""
        return f'"{self.text}"'


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def from_data(host: str, data: Any) -> TopoVM:
    """A :class:`TopoVM` from one VM's ``vm info`` data (objects or decoded JSON)."""
    d = msgspec.to_builtins(data)
    nets = (d.get("Config") or {}).get("networks") or []
    return TopoVM(
        host=str(d.get("Host") or host),
        name=str(d.get("Name", "")),
        id=int(d.get("ID", 0)),
        ip=_list([str(n.get("ip4", "")) for n in nets]),
        ip6=_list([str(n.get("ip6", "")) for n in nets]),
        state=int(d.get("State", 0)),
        vlans=tuple(int(n.get("vlan", 0)) for n in nets),
        router=ROUTER_TAG in (d.get("Tags") or {}),
    )


def dot(vms: list[TopoVM]) -> str:
    """2.8's dot text of ``vms``."""
    out = ["graph minimega {\n", 'size="8,11";\n', "overlap=false;\n"]
    vlans: set[int] = set()
    for vm in vms:
        out.append(f"{vm.label} [style=filled, color={STATE_COLORS.get(vm.state, '')}];\n")
        for vlan in vm.vlans:
            out.append(f"{vm.label} -- {vlan}\n")
            vlans.add(vlan)
    out += [f"{vlan};\n" for vlan in sorted(vlans)]
    out.append("}")
    return "".join(out)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def picture(vms: list[TopoVM]) -> str:
    """The dot text the web page and ``megabus viz`` draw (see the module's doc)."""
    out = ["graph minimega {\n", "overlap=false;\n", "node [fontsize=10];\n"]
    hosts: dict[str, list[TopoVM]] = {}
    for vm in vms:
        hosts.setdefault(vm.host, []).append(vm)
    vlans: set[int] = set()
    edges: list[str] = []
    for i, host in enumerate(sorted(hosts)):
        out.append(f"subgraph cluster_{i} {{\nlabel={_quoted(host)};\nstyle=rounded;\n")
        for vm in hosts[host]:
            shape = "box" if vm.router else "ellipse"
            color = STATE_COLORS.get(vm.state, "")
            out.append(f"{_quoted(vm.text)} [style=filled, color={color}, shape={shape}];\n")
            for vlan in vm.vlans:
                edges.append(f"{_quoted(vm.text)} -- {vlan}\n")
                vlans.add(vlan)
        out.append("}\n")
    out += edges
    out += [f'{vlan} [shape=oval, label="VLAN {vlan}"];\n' for vlan in sorted(vlans)]
    out.append("}")
    return "".join(out)
