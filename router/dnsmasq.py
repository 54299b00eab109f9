"""The ``dnsmasq ...`` lines: DHCP, DNS records, upstream, router advertisements.

Lines fill a pending config (``dnsmasq flush`` empties it); ``dnsmasq commit``
renders it from 2.8's template into ``-dnsmasq-conf`` (``/etc/dnsmasq.conf``),
has ``dnsmasq --test`` check it, and restarts ``dnsmasq -k -u root`` on it.
Committing the config that already runs, with dnsmasq alive, changes nothing.

The rendered lines are 2.8's: ``no-resolv``, ``server=<upstream>``,
``dhcp-range=set:<addr>,<low>,<high>`` (``set:<addr>,<addr>,static`` when the
listen address has no range), ``dhcp-host=set:<addr>,<mac>,<ip>``,
``dhcp-option = tag:<addr>, option:router|dns-server, ...``,
``host-record=<host>,<ips>`` (one line per IPv4/IPv6 pair: dnsmasq keeps one
address of each family per line) and ``dhcp-range=<subnet>,ra-names``. Ours adds
``enable-ra`` when there are RA subnets (router advertisements need it
spelled out), a pid file under ``-path``, dnsmasq logging to the daemon's log
folder, and the lease file when ``-dnsmasq-leases`` is given. Go's templates
walk maps in key order; so does this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from megabus.router import lines, programs
from megabus.router.lines import LineError
from megabus.router.options import Options

logger = logging.getLogger(__name__)


@dataclass
class Dhcp:
    """DHCP for one listen address (the tag that ties its lines together)."""

    addr: str
    low: str = ""
    high: str = ""
    router: str = ""
    dns: str = ""
    #: MAC -> address.
    static: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    dhcp: dict[str, Dhcp] = field(default_factory=dict)
    #: host -> addresses, in the order the lines gave them.
    dns: dict[str, list[str]] = field(default_factory=dict)
    ra: dict[str, None] = field(default_factory=dict)
    upstream: str = ""


def _ra_range(subnet: str) -> str:
    """``2001:1::`` or ``2001:1::/64`` as dnsmasq's ``<start>[,ra-names],<prefix len>``."""
    if "/" in subnet:
        net = lines.ip_network(subnet, "RA subnet")
        if net.version != 6:
            raise LineError(f"bad RA subnet {subnet!r}: not IPv6")
        return f"{net.network_address},ra-names,{net.prefixlen}"
    addr = lines.ip_address(subnet, "RA subnet")
    if addr.version != 6:
        raise LineError(f"bad RA subnet {subnet!r}: not IPv6")
    return f"{addr},ra-names"


def _host_records(host: str, ips: list[str]) -> list[str]:
    """2.8's ``host-record=<host>,<ips>``, split where dnsmasq needs it.

    A host-record holds at most one IPv4 and one IPv6 address (with two IPv4
    ones dnsmasq answers only the last), so a host with more gets one line
    per pair.
    """
    v4 = [ip for ip in ips if ":" not in ip]
    v6 = [ip for ip in ips if ":" in ip]
    return [
        ",".join(["host-record=" + host, *v4[i : i + 1], *v6[i : i + 1]])
        for i in range(max(len(v4), len(v6)))
    ]


def render(cfg: Config, opts: Options) -> str:
    out = [
        "# minirouter dnsmasq config (megabus): written by the router daemon, do not edit",
        "",
        "# don't read /etc/resolv.conf",
        "no-resolv",
    ]
    if cfg.upstream:
        out.append(f"server={cfg.upstream}")
    out += ["", f"pid-file={opts.state_file('dnsmasq.pid')}"]
    if opts.dnsmasq_leases:
        out.append(f"dhcp-leasefile={opts.dnsmasq_leases}")
    out += ["", "# dhcp", "dhcp-lease-max=4294967295"]
    for addr in sorted(cfg.dhcp):
        d = cfg.dhcp[addr]
        out.append(f"# {addr}")
        if d.low:
            out.append(f"dhcp-range=set:{addr},{d.low},{d.high}")
        else:
            out.append(f"dhcp-range=set:{addr},{addr},static")
        for m in sorted(d.static):
            out.append(f"dhcp-host=set:{addr},{m},{d.static[m]}")
        if d.router:
            out.append(f"dhcp-option = tag:{addr}, option:router, {d.router}")
        if d.dns:
            out.append(f"dhcp-option = tag:{addr}, option:dns-server, {d.dns}")
    if cfg.dns:
        out += ["", "# dns"]
        for host in sorted(cfg.dns):
            out += _host_records(host, cfg.dns[host])
    if cfg.ra:
        out += ["", "# router advertisements", "enable-ra"]
        for subnet in sorted(cfg.ra):
            out.append(f"dhcp-range={_ra_range(subnet)}")
    return "\n".join(out) + "\n"


class Dnsmasq:
    """The ``dnsmasq`` lines and the dnsmasq process."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.pending = Config()
        self._running_text = ""
        self.service = programs.Service(
            "dnsmasq",
            opts.state_file("dnsmasq.log"),
            opts.state_file("dnsmasq.pid"),
            marker=opts.dnsmasq_conf,
        )

    def handle(self, words: list[str]) -> None:
        verb = words[1] if len(words) > 1 else ""
        if verb == "flush":
            lines.want(words, 2)
            self.pending = Config()
        elif verb == "commit":
            lines.want(words, 2)
            self.commit()
        elif verb == "dhcp":
            self._dhcp(words)
        elif verb == "dns":
            lines.want(words, 4)
            ip = str(lines.ip_address(words[2]))
            host = lines.hostname(words[3])
            ips = self.pending.dns.setdefault(host, [])
            if ip not in ips:
                ips.append(ip)
        elif verb == "upstream":
            lines.want(words, 3)
            self.pending.upstream = str(lines.ip_address(words[2], "upstream server"))
        elif verb == "ra":
            lines.want(words, 3)
            _ra_range(words[2])
            self.pending.ra[words[2]] = None
        else:
            raise LineError(
                "unknown dnsmasq command: want flush, commit, dhcp, dns, upstream or ra"
            )

    def _dhcp(self, words: list[str]) -> None:
        kind = words[2] if len(words) > 2 else ""
        if kind == "range":
            lines.want(words, 6)
            d = self._find(words[3])
            d.low = str(lines.ipv4_address(words[4], "range start"))
            d.high = str(lines.ipv4_address(words[5], "range end"))
        elif kind == "option":
            lines.want(words, 6)
            what = lines.choice(words[3], "DHCP option", ("router", "dns"))
            d = self._find(words[4])
            server = str(lines.ipv4_address(words[5], f"{what} address"))
            if what == "router":
                d.router = server
            else:
                d.dns = server
        elif kind == "static":
            lines.want(words, 6)
            d = self._find(words[3])
            d.static[lines.mac(words[4])] = str(lines.ipv4_address(words[5], "static address"))
        else:
            raise LineError("unknown dnsmasq dhcp command: want range, option or static")

    def _find(self, addr: str) -> Dhcp:
        key = str(lines.ipv4_address(addr, "listen address"))
        return self.pending.dhcp.setdefault(key, Dhcp(key))

    def commit(self) -> None:
        text = render(self.pending, self.opts)
        if text == self._running_text and self.service.alive():
            logger.info("dnsmasq: config unchanged, dnsmasq running")
            return
        conf = self.opts.dnsmasq_conf
        programs.write_file(conf, text)
        programs.run(["dnsmasq", "--test", "-C", conf])
        self._running_text = ""
        self.service.start(["dnsmasq", "-k", "-u", "root", "-C", conf, "--log-facility=-"])
        self._running_text = text

    def stop(self) -> None:
        self.service.stop()
