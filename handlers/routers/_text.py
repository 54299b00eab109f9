"""The two texts of a router: ``router <vm>``'s summary and the minirouter config file.

Both are byte-exact 2.8 formats written by hand (``Router.String`` and
``writeConfig`` in 2.8's ``router.go``; the DHCP block through Go's
tabwriter with minwidth 5, padding 1). 2.8 walks Go maps here, in random
order: where it sorts (the summary's keys) this sorts the same way, and where
it does not (inside named routes, the whole config file) this sorts too, so
that the output is stable. The config is read line by line by the router
daemon, which does not care about the order inside a section; 2.8's own
tests ``sort`` it.
"""

from __future__ import annotations

from megabus.handlers.language.lexer import go_quote
from megabus.handlers.language.tabwriter import tabwrite
from megabus.handlers.routers._model import Bgp, Dhcp, FwRule, Ospf, Router

#: The VM tag where the router daemon keeps its recent log lines.
LOG_TAG = "minirouter_log"


def _go_list(items: list[str]) -> str:
    """Go's ``%v`` of a ``[]string``."""
    return "[" + " ".join(items) + "]"


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def dhcp_text(d: Dhcp) -> str:
    """2.8's ``dhcp.String``: two tabwriter blocks (the labels, then the static leases)."""
    labels = (
        f"Listen address:\t{d.addr}\n"
        f"Low address:\t{d.low}\n"
        f"High address:\t{d.high}\n"
        f"Router:\t{d.router}\n"
        f"DNS:\t{d.dns}\n"
        "Static IPs:\t\n"
    )
    statics = "".join(f"\t{mac}\t{d.static[mac]}\n" for mac in sorted(d.static))
    return tabwrite(labels, 5, 0, 1) + tabwrite(statics, 5, 0, 1)


def ospf_text(o: Ospf) -> str:
    """2.8's ``ospf.String`` (literal tabs, no tabwriter)."""
    out = [f"OSPF Area:\t{o.area}\n", "Interfaces:\n"]
    out += [f"\t{iface}\n" for iface in sorted(o.interfaces)]
    if o.prefixes:
        out.append("OSPF Export Networks or Routes:\n")
        out += [f"\t{f}\n" for f in sorted(o.prefixes)]
    return "".join(out)


def bgp_text(b: Bgp) -> str:
    """2.8's ``bgp.String`` (literal tabs, no tabwriter)."""
    out = [
        f"BGP Process Name:\t{b.process}\n",
        f"BGP Local IP:\t{b.local_ip}\n",
        f"BGP Local As:\t{b.local_as}\n",
        f"BGP Neighbor IP:\t{b.neighbor_ip}\n",
        f"BGP Neighbor As:\t{b.neighbor_as}\n",
        f"BGP RouteReflector:\t{_go_bool(b.route_reflector)}\n",
    ]
    if b.exports:
        out.append("BGP Export Networks or Routes:\n")
        out += [f"\t{f}\n" for f in sorted(b.exports)]
    return "".join(out)


def rule_text(rule: FwRule, chain: str = "") -> str:
    """2.8's ``fwRule.ToString``: a global rule names its direction, a chain rule its chain."""
    if not chain:
        chain = "incoming" if rule.inbound else "outgoing"
    src = rule.src or "<any>"
    dst = rule.dst or "<any>"
    proto = rule.proto or "<any>"
    return f"{chain}: {src} --> {dst} via {proto} -> {rule.action}"


def summary(r: Router) -> str:
    """``router <vm>``: 2.8's ``Router.String`` (the renderer trims the trailing blanks)."""
    o: list[str] = ["IPs:\n"]
    o += [f"Network: {i}: {_go_list(ips)}\n" for i, ips in enumerate(r.ips)]
    if r.loopbacks:
        o.append("Loopback IPs:\n")
        o += [f"{ip}\n" for ip in sorted(r.loopbacks.values())]
    o.append("\n")
    o += [dhcp_text(r.dhcp[k]) + "\n" for k in sorted(r.dhcp)]
    if r.dns:
        o.append("DNS:\n")
        o += [f"{ip}\t{host}\n" for ip in sorted(r.dns) for host in r.dns[ip]]
        o.append("\n")
    if r.upstream:
        o.append(f"Upstream DNS: {r.upstream}\n")
    if r.gw:
        o.append(f"Default Gateway: {r.gw}\n")
    if r.rad:
        o.append("Router Advertisements:\n")
        o += [f"{subnet}\n" for subnet in sorted(r.rad)]
        o.append("\n")
    if r.static_routes:
        o.append("Static Routes:\n")
        o += [f"{net}\t{r.static_routes[net]}\n" for net in sorted(r.static_routes)]
        o.append("\n")
    if r.named_routes:
        o.append("Named Static Routes:\n")
        for name in sorted(r.named_routes):
            o.append(f"{name}\n")
            routes = r.named_routes[name]
            for net in sorted(routes):
                nh = "\t" + routes[net] if routes[net] else ""
                o.append(f"\t{net}{nh}\n")
        o.append("\n")
    o += [ospf_text(r.ospf[k]) + "\n" for k in sorted(r.ospf)]
    o += [bgp_text(r.bgp[k]) + "\n" for k in sorted(r.bgp)]
    if not r.container:
        # 2.8 prints the rules' block whenever the VM has a NIC (one rule list each)
        if r.fw.rules:
            o.append("Firewall Rules:\n")
            for index, rules in enumerate(r.fw.rules):
                o += [f"  (iface {index}) {rule_text(rule)}\n" for rule in rules]
            o.append(f"  Default Action: {r.fw.default_action}\n")
        if r.fw.chains:
            o.append("Firewall Chains:\n")
            for name in sorted(r.fw.chains):
                chain = r.fw.chains[name]
                o += [f"  {rule_text(rule, name)}\n" for rule in chain.rules]
                o.append(f"  Default Action ({name}): {chain.default_action}\n")
    o.append("Log:\n")
    o += [f"\t{line}\n" for line in r.vm.tags.get(LOG_TAG, "").split("\n")]
    return "".join(o)


def _fw_match(rule: FwRule) -> str:
    """``[<src>] <dst> <proto>`` of a fw line, as 2.8 joins them (an empty dst stays a blank)."""
    words = f" {rule.src}" if rule.src else ""
    return f"{words} {rule.dst} {rule.proto}"


def config(r: Router) -> str:
    """The minirouter config file: 2.8's ``writeConfig``, sections in its order.

    Chooses the router ID (2.8 does it here), so call it at commit time only.
    """
    w: list[str] = [f"log level {r.log_level}\n"]
    # only when the addresses changed since the last commit: re-adding them
    # would drop the router's established connections
    if r.update_ips:
        w.append("ip flush\n")
        w += [f"ip add {i} {ip}\n" for i, ips in enumerate(r.ips) for ip in ips]
        w += [f"ip add lo {r.loopbacks[i]}\n" for i in sorted(r.loopbacks)]

    w.append("dnsmasq flush\n")
    for addr in sorted(r.dhcp):
        d = r.dhcp[addr]
        if d.low:
            w.append(f"dnsmasq dhcp range {d.addr} {d.low} {d.high}\n")
        if d.router:
            w.append(f"dnsmasq dhcp option router {d.addr} {d.router}\n")
        if d.dns:
            w.append(f"dnsmasq dhcp option dns {d.addr} {d.dns}\n")
        w += [f"dnsmasq dhcp static {d.addr} {mac} {d.static[mac]}\n" for mac in sorted(d.static)]
    w += [f"dnsmasq dns {ip} {host}\n" for ip in sorted(r.dns) for host in r.dns[ip]]
    if r.upstream:
        w.append(f"dnsmasq upstream {r.upstream}\n")
    w.append(f"route add default gw {r.gw}\n" if r.gw else "route del default\n")
    w += [f"dnsmasq ra {subnet}\n" for subnet in sorted(r.rad)]
    w.append("dnsmasq commit\n")

    w.append("bird flush\n")
    w += [f"bird static {net} {r.static_routes[net]} null\n" for net in sorted(r.static_routes)]
    for name in sorted(r.named_routes):
        routes = r.named_routes[name]
        w += [f"bird static {net} {routes[net] or 'null'} {name}\n" for net in sorted(routes)]
    for area in sorted(r.ospf):
        o = r.ospf[area]
        for iface in sorted(o.interfaces):
            # the interface line first, so it exists even without options
            w.append(f"bird ospf {o.area} {iface}\n")
            opts = o.interfaces[iface]
            w += [
                f"bird ospf {o.area} {iface} {go_quote(k)} {go_quote(opts[k])}\n"
                for k in sorted(opts)
            ]
        w += [f"bird ospf {o.area} filter {f}\n" for f in sorted(o.prefixes)]
    for process in sorted(r.bgp):
        b = r.bgp[process]
        w.append(f"bird bgp {b.process} local {b.local_ip} {b.local_as}\n")
        w.append(f"bird bgp {b.process} neighbor {b.neighbor_ip} {b.neighbor_as}\n")
        if b.route_reflector:
            w.append(f"bird bgp {b.process} rrclient\n")
        w += [f"bird bgp {b.process} filter {f}\n" for f in sorted(b.exports)]
    r.choose_router_id()
    w.append(f"bird routerid {r.router_id}\n")
    w.append("bird commit\n")

    # 2.8 writes firewall lines for KVM routers only
    if not r.container:
        w.append("fw flush\n")
        w.append(f"fw default {r.fw.default_action}\n")
        for name in sorted(r.fw.chains):
            chain = r.fw.chains[name]
            w += [
                f"fw chain {name} action {rule.action}{_fw_match(rule)}\n" for rule in chain.rules
            ]
            w.append(f"fw chain {name} default action {chain.default_action}\n")
        for i, rules in enumerate(r.fw.rules):
            for rule in rules:
                way = "in" if rule.inbound else "out"
                if rule.applies_chain():
                    w.append(f"fw chain {rule.action} apply {way} {i}\n")
                else:
                    w.append(f"fw {rule.action} {way} {i}{_fw_match(rule)}\n")
    return "".join(w)
