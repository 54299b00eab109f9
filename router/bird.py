"""The ``bird ...`` lines: static routes, OSPF, BGP and the router id, through BIRD 2.

2.8 rendered BIRD 1.x's ``bird.conf`` and ``bird6.conf``; we render one BIRD 2
config (``-bird-conf``, default ``/etc/bird.conf``) with ipv4 and ipv6
channels and keep 2.8's meaning:

* ``bird static <net> <nh> null``: an unnamed static route (protocol
  ``static4`` or ``static6`` by the route's family); a next hop is required;
* ``bird static <net> <nh|null> <name>``: a named set (protocol
  ``static_<name>``, ``static6_<name>`` for IPv6); without a next hop the
  route is ``unreachable`` (2.8's ``reject``): announced, never forwarded;
* ``bird ospf <area> <index|lo> [<option> <value>]``: the interface in the
  area, each option written as ``<option> <value>;`` in its block;
  ``bird ospf <area> filter <name|prefix>``: a prefix goes into the area's
  ``networks`` block, a name exports that named static set into OSPF;
* ``bird bgp <p> local|neighbor <ip> <as>``, ``rrclient`` (``rr client``) and
  ``filter all|<name>``: the export filter accepts BGP-learned routes for
  ``all`` and the named static sets for names; without a filter nothing is
  exported, as in 2.8;
* ``bird routerid <id>``; without one the router id is a random one made when
  the daemon started (2.8's fallback).

The kernel protocols export with ``metric 0`` (the kernel's default), so
``route -n`` shows routes as 2.8's routers did. ``bird commit`` has ``bird
-p`` check the config, then (re)starts ``bird -f -s <socket> -P <pid> -c
<conf>``; committing the running config again changes nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field

from megabus.router import ifaces, lines, programs
from megabus.router.lines import LineError
from megabus.router.options import Options

logger = logging.getLogger(__name__)

_OPTION = re.compile(r"^[a-z][a-z0-9 ]{0,40}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
#: Seconds bird has to answer on its control socket after a start.
START_WAIT = 10.0


@dataclass
class Ospf:
    area: str
    #: interface -> option -> value, options in the order given.
    interfaces: dict[str, dict[str, str]] = field(default_factory=dict)
    prefixes: dict[str, None] = field(default_factory=dict)
    #: named static sets exported into OSPF.
    exports: dict[str, None] = field(default_factory=dict)


@dataclass
class Bgp:
    name: str
    local_ip: str = ""
    local_as: int = 0
    neighbor_ip: str = ""
    neighbor_as: int = 0
    rr_client: bool = False
    #: ``all`` and/or named static sets.
    exports: dict[str, None] = field(default_factory=dict)


@dataclass
class Config:
    router_id: str = ""
    #: network -> next hop, per family.
    static4: dict[str, str] = field(default_factory=dict)
    static6: dict[str, str] = field(default_factory=dict)
    #: name -> network -> next hop ("" for none).
    named: dict[str, dict[str, str]] = field(default_factory=dict)
    ospf: dict[str, Ospf] = field(default_factory=dict)
    bgp: dict[str, Bgp] = field(default_factory=dict)


def _area(word: str) -> str:
    if word.isdigit() and int(word) <= 0xFFFFFFFF:
        return str(int(word))
    try:
        return str(ipaddress.IPv4Address(word))
    except ValueError:
        raise LineError(f"bad OSPF area {word!r}: want a number or a dotted quad") from None


def _static_protocol(name: str, version: int) -> str:
    return f"static_{name}" if version == 4 else f"static6_{name}"


def _family_routes(routes: dict[str, str], version: int) -> list[tuple[str, str]]:
    return [
        (net, nh)
        for net, nh in sorted(routes.items())
        if ipaddress.ip_network(net).version == version
    ]


def _route_line(net: str, nh: str) -> str:
    return f"\troute {net} via {nh};" if nh else f"\troute {net} unreachable;"


def render(cfg: Config, router_id: str) -> str:
    out = [
        "# minirouter BIRD 2 config (megabus): written by the router daemon, do not edit",
        "",
        f"router id {router_id};",
        # bird's log goes to the daemon's log folder; trace and debug only when asked for
        "log stderr { info, remote, warning, error, auth, fatal, bug };",
        "",
        "protocol device {",
        "\tscan time 60;",
        "}",
        "",
        "# metric 0: the kernel's default, as 2.8's routes had (route -n shows 0)",
    ]
    for version in (4, 6):
        out += [
            f"protocol kernel kernel{version} {{",
            "\tscan time 60;",
            "\tmetric 0;",
            f"\tipv{version} {{",
            "\t\timport none;",
            "\t\texport all;",
            "\t};",
            "}",
        ]
    for version, unnamed in ((4, cfg.static4), (6, cfg.static6)):
        if not unnamed:
            continue
        out += ["", f"protocol static static{version} {{", "\tcheck link;"]
        out.append(f"\tipv{version} {{ import all; }};")
        out += [_route_line(net, nh) for net, nh in sorted(unnamed.items())]
        out.append("}")
    for name in sorted(cfg.named):
        for version in (4, 6):
            routes = _family_routes(cfg.named[name], version)
            if not routes:
                continue
            out += ["", f"protocol static {_static_protocol(name, version)} {{", "\tcheck link;"]
            out.append(f"\tipv{version} {{ import all; }};")
            out += [_route_line(net, nh) for net, nh in routes]
            out.append("}")
    if cfg.ospf:
        out += _render_ospf(cfg)
    for name in sorted(cfg.bgp):
        out += _render_bgp(cfg.bgp[name])
    return "\n".join(out) + "\n"


def _export(conditions: list[str], indent: str) -> list[str]:
    if not conditions:
        return [f"{indent}export none;"]
    test = " || ".join(f"({c})" for c in conditions)
    return [
        f"{indent}export filter {{",
        f"{indent}\tif {test} then accept;",
        f"{indent}\treject;",
        f"{indent}}};",
    ]


def _render_ospf(cfg: Config) -> list[str]:
    names = sorted({n for o in cfg.ospf.values() for n in o.exports})
    out = ["", "protocol ospf v2 ospf4 {", "\tipv4 {", "\t\timport all;"]
    out += _export([f'proto = "{_static_protocol(n, 4)}"' for n in names], "\t\t")
    out.append("\t};")
    for area in sorted(cfg.ospf, key=lambda a: int(ipaddress.IPv4Address(_as_quad(a)))):
        o = cfg.ospf[area]
        out.append(f"\tarea {area} {{")
        if o.prefixes:
            out.append("\t\tnetworks {")
            out += [f"\t\t\t{p};" for p in sorted(o.prefixes)]
            out.append("\t\t};")
        for iface in sorted(o.interfaces):
            out.append(f'\t\tinterface "{iface}" {{')
            for opt, value in o.interfaces[iface].items():
                shown = f'"{value}"' if opt == "password" else value
                out.append(f"\t\t\t{opt} {shown};")
            out.append("\t\t};")
        out.append("\t};")
    out.append("}")
    return out


def _as_quad(area: str) -> str:
    return str(ipaddress.IPv4Address(int(area))) if area.isdigit() else area


def _render_bgp(b: Bgp) -> list[str]:
    out = ["", f"protocol bgp {b.name} {{"]
    if b.local_ip:
        out.append(f"\tlocal {b.local_ip} as {b.local_as};")
    out.append(f"\tneighbor {b.neighbor_ip} as {b.neighbor_as};")
    if b.rr_client:
        out.append("\trr client;")
    conditions = []
    if "all" in b.exports:
        conditions.append("source = RTS_BGP")
    conditions += [f'proto = "{_static_protocol(n, 4)}"' for n in sorted(b.exports) if n != "all"]
    out += ["\tipv4 {", "\t\timport all;", *_export(conditions, "\t\t"), "\t};", "}"]
    return out


def _where(err: programs.ProgramError, text: str) -> str:
    """bird's complaint with the rendered line it names (a name BIRD reserves, say)."""
    m = re.search(r":(\d+):\d+ (.*)", err.output)
    if m is None:
        return str(err)
    rendered = text.splitlines()
    n = int(m.group(1))
    shown = rendered[n - 1].strip() if 0 < n <= len(rendered) else ""
    return f"{m.group(2).strip()} in {shown!r}" if shown else m.group(2).strip()


class Bird:
    """The ``bird`` lines and the bird process."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.pending = Config()
        # 2.8's fallback router id: random, made once per daemon
        self.default_id = ".".join(str(random.randint(1, 254)) for _ in range(4))
        self._running_text = ""
        self.service = programs.Service(
            "bird", opts.state_file("bird.log"), opts.state_file("bird.pid"), marker=opts.bird_conf
        )

    def handle(self, words: list[str]) -> None:
        verb = words[1] if len(words) > 1 else ""
        if verb == "flush":
            lines.want(words, 2)
            self.pending = Config()
        elif verb == "commit":
            lines.want(words, 2)
            self.commit()
        elif verb == "routerid":
            lines.want(words, 3)
            rid = str(lines.ipv4_address(words[2], "router id"))
            # the node's "not set yet"; BIRD would have to guess one from the interfaces
            self.pending.router_id = "" if rid == "0.0.0.0" else rid
        elif verb == "static":
            lines.want(words, 5)
            self._static(words[2], words[3], words[4])
        elif verb == "ospf":
            self._ospf(words)
        elif verb == "bgp":
            self._bgp(words)
        else:
            raise LineError(
                "unknown bird command: want flush, commit, routerid, static, ospf or bgp"
            )

    def _static(self, network: str, nh_word: str, name_word: str) -> None:
        net = lines.ip_network(network)
        nh = ""
        # "null" is what the node writes for "no next hop"; "0" is how users spell it
        if nh_word not in ("null", "0"):
            addr = lines.ip_address(nh_word, "next hop")
            if addr.version != net.version:
                raise LineError(f"next hop {nh_word} is not of {net}'s family")
            nh = str(addr)
        if name_word == "null":
            if not nh:
                raise LineError("an unnamed static route needs a next hop")
            (self.pending.static4 if net.version == 4 else self.pending.static6)[str(net)] = nh
            return
        name = lines.name(name_word, "static route name")
        self.pending.named.setdefault(name, {})[str(net)] = nh

    def _ospf(self, words: list[str]) -> None:
        lines.want(words, 4, 5, 6)
        area = _area(words[2])
        if words[3] == "filter":
            lines.want(words, 5)
            o = self.pending.ospf.setdefault(area, Ospf(area))
            if "/" in words[4]:
                net = lines.ip_network(words[4], "OSPF network")
                if net.version != 4:
                    raise LineError(f"OSPF network {words[4]} is not IPv4")
                o.prefixes[str(net)] = None
            else:
                o.exports[lines.name(words[4], "static route name")] = None
            return
        if len(words) == 5:
            raise LineError("an OSPF option needs a value")
        iface = ifaces.resolve(self.opts.sysfs, lines.index(words[3]))
        options: dict[str, str] = {}
        if len(words) == 6:
            opt, value = words[4].strip(), words[5].strip()
            if not _OPTION.match(opt):
                raise LineError(f"bad OSPF option {opt!r}")
            if not _VALUE.match(value):
                raise LineError(f"bad value {value!r} for OSPF option {opt!r}")
            options[opt] = value
        o = self.pending.ospf.setdefault(area, Ospf(area))
        o.interfaces.setdefault(iface, {}).update(options)

    def _bgp(self, words: list[str]) -> None:
        lines.want(words, 4, 5, 6)
        name = lines.name(words[2], "BGP process name")
        kind = words[3]
        b = self.pending.bgp.setdefault(name, Bgp(name))
        if kind in ("local", "neighbor") and len(words) == 6:
            ip = str(lines.ipv4_address(words[4], f"BGP {kind} address"))
            asn = lines.number(words[5], "AS number", 1, 0xFFFFFFFF)
            if kind == "local":
                b.local_ip, b.local_as = ip, asn
            else:
                b.neighbor_ip, b.neighbor_as = ip, asn
        elif kind == "rrclient" and len(words) == 4:
            b.rr_client = True
        elif kind == "filter" and len(words) == 5:
            target = words[4] if words[4] == "all" else lines.name(words[4], "filter name")
            b.exports[target] = None
        else:
            raise LineError(
                "unknown bird bgp command: want local|neighbor <ip> <as>, rrclient or filter <name>"
            )

    def commit(self) -> None:
        missing = [b.name for b in self.pending.bgp.values() if not b.neighbor_ip]
        if missing:
            raise LineError(f"BGP process {', '.join(missing)} has no neighbor")
        text = render(self.pending, self.pending.router_id or self.default_id)
        if text == self._running_text and self.service.alive():
            logger.info("bird: config unchanged, bird running")
            return
        conf = self.opts.bird_conf
        programs.need("bird")
        programs.write_file(conf, text)
        try:
            programs.run(["bird", "-p", "-c", conf])
        except programs.ProgramError as err:
            raise programs.ProgramError(f"bird rejected the config: {_where(err, text)}") from None
        self._running_text = ""
        sock = self.opts.bird_socket
        self.service.start(["bird", "-f", "-s", sock, "-P", self.service.pid_file, "-c", conf])
        self._await_socket(sock)
        self._running_text = text

    def _await_socket(self, sock: str) -> None:
        deadline = time.monotonic() + START_WAIT
        ask = programs.which("birdc") is not None
        while True:
            if os.path.exists(sock) and not ask:
                return
            if os.path.exists(sock):
                try:
                    programs.run(["birdc", "-s", sock, "show", "status"], timeout=5.0)
                    return
                except programs.ProgramError:
                    pass
            if not self.service.alive():
                raise programs.ProgramError(f"bird exited: {programs.tail(self.service.log_path)}")
            if time.monotonic() > deadline:
                raise programs.ProgramError(f"bird did not answer on {sock} within {START_WAIT:g}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.service.stop()
