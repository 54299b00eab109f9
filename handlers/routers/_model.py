"""One VM's router config (2.8's ``Router`` in ``router.go``), changed the way 2.8 changes it.

Every method keeps 2.8's rules and error texts, including its quirks, since
scripts see them: a loopback is keyed by the index typed with it (and may be
past the VM's NICs); removing one loopback does not mark the IPs as changed;
``route ospf <area> <network> <option> <value>`` keeps only the last option
of an interface; ``clear router <vm>`` keeps the log level, upstream and
gateway. Where 2.8 would index out of range (a negative interface index) the
method gives 2.8's ``no such network index`` error instead of crashing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import VM, VMType
from megabus.handlers.routers import _goaddr

#: 2.8's router ID before one is set or chosen.
NO_ROUTER_ID = "0.0.0.0"
_T = TypeVar("_T")

#: The fw actions (``accept``, ``drop``, ``reject``); a rule applying a chain has the chain's name.
FW_ACTIONS = ("accept", "drop", "reject")


def _entry(table: dict[str, _T], key: str, error: str) -> _T:
    """``table[key]``, or 2.8's ``<error>: <key>`` when it has none."""
    if key not in table:
        raise CommandError(f"{error}: {key}")
    return table[key]


def _entry_or_new(table: dict[str, _T], key: str, new: Callable[[str], _T]) -> _T:
    """2.8's ``...FindOrCreate``: the entry of ``key``, made by ``new(key)`` the first time."""
    if key not in table:
        table[key] = new(key)
    return table[key]


def go_atoi(text: str) -> int:
    """``strconv.Atoi`` with Go's error texts (which 2.8 prints inside its own)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    n = int(text)
    if not -(2**63) <= n < 2**63:
        raise CommandError(f'strconv.Atoi: parsing "{text}": value out of range')
    return n


@dataclass
class Dhcp:
    """DHCP served on one listen address."""

    addr: str
    low: str = ""
    high: str = ""
    router: str = ""
    dns: str = ""
    #: MAC -> IP.
    static: dict[str, str] = field(default_factory=dict)


@dataclass
class Ospf:
    """One OSPF area."""

    area: str
    #: interface index (as typed) -> option -> value.
    interfaces: dict[str, dict[str, str]] = field(default_factory=dict)
    #: exported prefixes or named static routes; True for a name (2.8 keeps the flag, unused).
    prefixes: dict[str, bool] = field(default_factory=dict)


@dataclass
class Bgp:
    """One BGP process."""

    process: str
    local_ip: str = ""
    local_as: int = 0
    neighbor_ip: str = ""
    neighbor_as: int = 0
    route_reflector: bool = False
    #: exported networks or named static routes ("all" for every route).
    exports: dict[str, bool] = field(default_factory=dict)


@dataclass
class FwRule:
    """One firewall rule; ``inbound`` means ``in`` (unused in a chain's own rules)."""

    inbound: bool = False
    src: str = ""
    dst: str = ""
    proto: str = ""
    #: accept, drop, reject, or the name of the chain this rule applies.
    action: str = ""

    def applies_chain(self) -> bool:
        """A rule made by ``fw chain <c> apply``: no match, only a jump (2.8's test)."""
        return not (self.src or self.dst or self.proto)


@dataclass
class FwChain:
    """A user chain: its rules, then its default action."""

    default_action: str = "drop"
    rules: list[FwRule] = field(default_factory=list)


@dataclass
class Fw:
    """The firewall: the FORWARD default, per-interface rules, user chains."""

    default_action: str = "accept"
    #: one list of rules per interface index the VM had when its router was made
    rules: list[list[FwRule]] = field(default_factory=list)
    chains: dict[str, FwChain] = field(default_factory=dict)

    @classmethod
    def fresh(cls, interfaces: int) -> Fw:
        """2.8's defaults: accept, no rules, no chains."""
        return cls(rules=[[] for _ in range(interfaces)])


@dataclass(eq=False)
class Router:
    """The pending config of one router VM; ``router <vm> commit`` delivers it."""

    vm: VM = field(repr=False)
    #: addresses per interface index, in the order they were added
    ips: list[list[str]]
    #: loopback addresses keyed by the index typed with them
    loopbacks: dict[int, str] = field(default_factory=dict)
    log_level: str = "error"
    #: the IPs changed since the last commit (only then does the config touch addresses)
    update_ips: bool = False
    #: counts IP changes, so that a commit clears ``update_ips`` only if none came meanwhile
    ip_changes: int = 0
    dhcp: dict[str, Dhcp] = field(default_factory=dict)
    #: IP -> hostnames, in the order they were added
    dns: dict[str, list[str]] = field(default_factory=dict)
    upstream: str = ""
    gw: str = ""
    #: router advertisement subnets
    rad: dict[str, bool] = field(default_factory=dict)
    #: network -> next hop
    static_routes: dict[str, str] = field(default_factory=dict)
    #: name -> network -> next hop ("" for none)
    named_routes: dict[str, dict[str, str]] = field(default_factory=dict)
    ospf: dict[str, Ospf] = field(default_factory=dict)
    bgp: dict[str, Bgp] = field(default_factory=dict)
    router_id: str = NO_ROUTER_ID
    fw: Fw = field(default_factory=Fw)
    #: one commit at a time: a commit writes the file and replaces the VM's cc commands
    commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def for_vm(cls, vm: VM) -> Router:
        """2.8's ``NewRouter``: one IP list and one fw rule list per NIC the VM has."""
        n = len(vm.config.networks)
        return cls(vm=vm, ips=[[] for _ in range(n)], fw=Fw.fresh(n))

    @property
    def container(self) -> bool:
        """2.8 applies no firewall to container routers."""
        return self.vm.type == VMType.CONTAINER

    # -- interfaces ------------------------------------------------------------------------

    def _ips_changed(self) -> None:
        self.update_ips = True
        self.ip_changes += 1

    def interface_add(self, network: int, ip: str, loopback: bool) -> None:
        """2.8's ``InterfaceAdd``."""
        if loopback:
            if ip == "dhcp":
                raise CommandError(f"Cannot put {ip} on loopback")
            if not _is_valid_ip(ip):
                raise CommandError(f"invalid IP: {ip}")
            if ip in self.loopbacks.values():
                raise CommandError(f"IP {ip} already exists")
            self.loopbacks[network] = ip
            self._ips_changed()
            return
        if not 0 <= network < len(self.ips):
            raise CommandError(f"no such network index: {network}")
        if not _is_valid_ip(ip):
            raise CommandError(f"invalid IP: {ip}")
        if ip in self.ips[network]:
            raise CommandError(f"IP {ip} already exists")
        self.ips[network].append(ip)
        self._ips_changed()

    def interface_del(self, network_text: str, ip: str, loopback: bool) -> None:
        """2.8's ``InterfaceDel``: ``network_text`` "" clears every address and loopback."""
        if network_text == "":
            self.ips = [[] for _ in self.ips]
            self.loopbacks = {}
            self._ips_changed()
            return
        network = go_atoi(network_text)
        if loopback:
            if ip == "all":
                self.loopbacks = {}
                self._ips_changed()
                return
            # 2.8 removes the index's loopback whatever address was typed, and leaves the
            # IPs unchanged for the next commit
            self.loopbacks.pop(network, None)
            return
        if not 0 <= network < len(self.ips):
            raise CommandError(f"no such network index: {network}")
        if ip in ("", "all"):
            self.ips[network] = []
            self._ips_changed()
            return
        if not _is_valid_ip(ip):
            raise CommandError(f"invalid IP: {ip}")
        if ip not in self.ips[network]:
            raise CommandError(f"no such network: {ip}")
        self.ips[network].remove(ip)
        self._ips_changed()

    def choose_router_id(self) -> None:
        """2.8's ``setRouterID``: once set it stays; else the highest loopback, else interface.

        Highest as ``bytes.Compare`` of ``net.ParseIP``'s forms, as in 2.8,
        but among IPv4 addresses only: 2.8 let an IPv6 address win, and BIRD
        refuses one as its (32-bit) router ID. With none the ID stays
        ``0.0.0.0``, which the router daemon reads as "pick one".
        """
        if self.router_id != NO_ROUTER_ID:
            return
        candidates = (
            list(self.loopbacks.values())
            if self.loopbacks
            else [ip for ips in self.ips for ip in ips]
        )
        best = self.router_id
        best_key = _goaddr.parse_ip(best)
        for ip in candidates:
            addr = _goaddr.address(ip)
            key = _goaddr.parse_ip(addr)
            if _goaddr.is_ipv4(addr) and key > best_key:
                best, best_key = addr, key
        self.router_id = best

    def set_router_id(self, rid: str) -> None:
        """``router <vm> rid <id>``."""
        if not _goaddr.parse_ip(rid):
            raise CommandError(f"invalid routerid: {rid}")
        self.router_id = rid

    # -- dhcp, dns, ra ----------------------------------------------------------------------

    def dhcp_of(self, addr: str) -> Dhcp:
        """2.8's ``dhcpFindOrCreate``."""
        return _entry_or_new(self.dhcp, addr, Dhcp)

    def dhcp_del(self, addr: str, part: str, mac: str = "") -> None:
        """``clear router <vm> dhcp [<addr> [range|router|dns|static [<mac>]]]``."""
        if addr == "":
            self.dhcp = {}
            return
        d = _entry(self.dhcp, addr, "no such address")
        if part == "range":
            d.low = d.high = ""
        elif part == "router":
            d.router = ""
        elif part == "dns":
            d.dns = ""
        elif part == "static":
            if mac == "":
                d.static = {}
            else:
                _entry(d.static, mac, "no such mac")
                del d.static[mac]
        else:
            del self.dhcp[addr]

    def dns_add(self, ip: str, hostname: str) -> None:
        self.dns.setdefault(ip, []).append(hostname)

    def dns_del(self, ip: str) -> None:
        if ip == "":
            self.dns = {}
        else:
            _entry(self.dns, ip, "no such ip")
            del self.dns[ip]

    def ra_del(self, subnet: str) -> None:
        if subnet == "":
            self.rad = {}
        else:
            _entry(self.rad, subnet, "no such subnet")
            del self.rad[subnet]

    # -- routes ----------------------------------------------------------------------------

    def route_static_add(self, network: str, next_hop: str, name: str) -> None:
        """2.8's ``RouteStaticAdd``: a named route's next hop ``0`` means none."""
        if name:
            self.named_routes.setdefault(name, {})[network] = "" if next_hop == "0" else next_hop
        else:
            self.static_routes[network] = next_hop

    def route_static_del(self, network: str) -> None:
        if network in ("", "all"):
            self.static_routes = {}
            return
        _entry(self.static_routes, network, "no such static route")
        del self.static_routes[network]

    def named_route_del(self, network: str, name: str) -> None:
        if name == "":
            self.named_routes = {}
            return
        routes = _entry(self.named_routes, name, "no such named static route")
        if network == "all":
            del self.named_routes[name]
            return
        _entry(routes, network, "no such network in named static route")
        del routes[network]

    def ospf_of(self, area: str) -> Ospf:
        return _entry_or_new(self.ospf, area, Ospf)

    def ospf_add(self, area: str, iface: str, export: str) -> None:
        """2.8's ``RouteOSPFAdd``: naming an interface again resets its options."""
        o = self.ospf_of(area)
        if iface:
            o.interfaces[iface] = {}
        if export:
            o.prefixes[export] = "/" not in export

    def ospf_option(self, area: str, iface: str, option: str, value: str) -> None:
        """2.8's ``RouteOSPFOption``: resets the interface's options, then sets this one."""
        o = self.ospf_of(area)
        o.interfaces[iface] = {option: value}

    def ospf_del(self, area: str, iface: str) -> None:
        if area == "":
            self.ospf = {}
            return
        o = _entry(self.ospf, area, "no such area")
        if iface == "":
            o.interfaces = {}
            return
        _entry(o.interfaces, iface, "no such interface")
        del o.interfaces[iface]

    def ospf_del_export(self, area: str, export: str) -> None:
        if area == "":
            self.ospf = {}
            return
        o = _entry(self.ospf, area, "no such area")
        if export == "":
            o.prefixes = {}
            return
        _entry(o.prefixes, export, "no such filter")
        del o.prefixes[export]

    def bgp_of(self, process: str) -> Bgp:
        return _entry_or_new(self.bgp, process, Bgp)

    def bgp_peer(self, process: str, local: bool, ip: str, asn: int) -> None:
        b = self.bgp_of(process)
        if local:
            b.local_ip, b.local_as = ip, asn
        else:
            b.neighbor_ip, b.neighbor_as = ip, asn

    def bgp_export(self, process: str, what: str) -> None:
        """``export all`` (``what`` "all") or ``export filter <name>``."""
        self.bgp_of(process).exports[what] = True

    def bgp_rr_del(self, process: str) -> None:
        _entry(self.bgp, process, "no such bgp process").route_reflector = False

    def bgp_del(self, process: str, local: bool, everything: bool) -> None:
        """2.8's ``RouteBGPDel``: the process, or its local or neighbor end."""
        if process == "":
            self.bgp = {}
            return
        b = _entry(self.bgp, process, "no such bgp process")
        if everything:
            del self.bgp[process]
        elif local:
            b.local_ip, b.local_as = "", 0
        else:
            b.neighbor_ip, b.neighbor_as = "", 0

    def routes_del(self) -> None:
        """``clear router <vm> route``: every protocol."""
        self.static_routes = {}
        self.named_routes = {}
        self.ospf = {}
        self.bgp = {}

    # -- firewall ---------------------------------------------------------------------------

    def fw_add(
        self, network: int, inbound: bool, src: str, dst: str, proto: str, action: str
    ) -> None:
        """2.8's ``FirewallAdd``."""
        if not 0 <= network < len(self.fw.rules):
            raise CommandError(f"no such network index: {network}")
        self.fw.rules[network].append(FwRule(inbound, src, dst, proto, action))

    def fw_chain_default(self, chain: str, action: str) -> None:
        """A chain made here takes ``action`` as its default (2.8's ``new(fwChain)``)."""
        self.fw.chains.setdefault(chain, FwChain(default_action=action)).default_action = action

    def fw_chain_add(self, chain: str, src: str, dst: str, proto: str, action: str) -> None:
        """A chain made by its first rule defaults to drop."""
        c = self.fw.chains.setdefault(chain, FwChain(default_action="drop"))
        c.rules.append(FwRule(False, src, dst, proto, action))

    def fw_chain_apply(self, network: int, inbound: bool, chain: str) -> None:
        if chain not in self.fw.chains:
            raise CommandError(f"unknown chain {chain}")
        if not 0 <= network < len(self.fw.rules):
            raise CommandError(f"no such network index: {network}")
        self.fw.rules[network].append(FwRule(inbound, action=chain))

    def fw_flush(self) -> None:
        """``clear router <vm> fw``: 2.8's defaults again."""
        self.fw = Fw.fresh(len(self.fw.rules))

    # -- all of it ---------------------------------------------------------------------------

    def clear(self) -> None:
        """``clear router <vm>``: 2.8 keeps the log level, upstream and gateway."""
        self.interface_del("", "", True)
        self.dns = {}
        self.rad = {}
        self.static_routes = {}
        self.named_routes = {}
        self.ospf = {}
        self.dhcp = {}
        self.bgp = {}
        self.router_id = NO_ROUTER_ID
        self.fw_flush()


def _is_valid_ip(ip: str) -> bool:
    """2.8's ``routerIsValidIP``: a CIDR or ``dhcp``."""
    return ip == "dhcp" or _goaddr.is_cidr(ip)


def check_endpoint(text: str, what: str) -> None:
    """2.8's check of a fw ``<src>``/``<dst>``: ``ip[/cidr]`` or ``ip:port`` with an integer port.

    ``what`` is ``source`` or ``destination``. An IPv6 address has colons, so
    2.8 calls it malformed; so does this.
    """
    fields = text.split(":")
    if len(fields) == 1:
        return
    if len(fields) == 2:
        try:
            go_atoi(fields[1])
        except CommandError as err:
            raise CommandError(f"validating fw {what} port {fields[1]}: {err}") from None
        return
    raise CommandError(f"malformed fw {what} {text}")
