"""The ``dnsmasq`` family: host DHCP/DNS servers (start, list, kill, configure).

2.8's twelve patterns, texts and tables; the servers themselves (processes,
files, the DNS-leak fix) live in :mod:`megabus.handlers.net.dnsmasq`. The
servers belong to the node, not to a namespace (2.8: a global table), and
go on ``clear all`` and when the node stops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.model.table import WILDCARD, go_atoi
from megabus.handlers.net import Dnsmasqs, Server
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

HEADER = ["id", "address", "min", "max", "path", "pid"]

_LONG = """Start a dhcp/dns server on a specified IP with a specified range. For example,
to start a DHCP server on IP 10.0.0.1 serving the range 10.0.0.2 -
10.0.254.254:

\tdnsmasq start 10.0.0.1 10.0.0.2 10.0.254.254

To start only a from a config file:

\tdnsmasq start /path/to/config

To list running dnsmasq servers, invoke dnsmasq with no arguments. To kill a
running dnsmasq server, specify its ID from the list of running servers. For
example, to kill dnsmasq server 2:

\tdnsmasq kill 2

To kill all running dnsmasq servers, pass all as the ID:

\tdnsmasq kill all

dnsmasq will provide DNS service from the host, as well as from /etc/hosts. You
can specify an additional config file for dnsmasq by providing a file as an
additional argument.

\tdnsmasq start 10.0.0.1 10.0.0.2 10.0.254.254 /tmp/dnsmasq-extra.conf

NOTE: If specifying an additional config file, you must provide the full path
to the file."""

_CONFIGURE_LONG = """Configuration options for running dnsmasq instances. Define a static IP
allocation, specify a hostname->IP mapping for DNS, or set DHCP options.

To list all existing static IP allocations on the first running dnsmasq
server, do the following:

\tdnsmasq configure 0 ip

To set up a static IP allocation for a VM with the MAC address
00:11:22:33:44:55:

\tdnsmasq configure 0 ip 00:11:22:33:44:55 172.17.0.50

To see DNS entries:

\tdnsmasq configure 0 dns

To add a DNS entry:

\tdnsmasq configure 0 dns 172.17.0.50 example.com

dnsmasq does not forward queries for names it does not know until it is
given an upstream DNS server (it never reads the host's /etc/resolv.conf).
To list the upstream servers, and to add one:

\tdnsmasq configure 0 dns upstream
\tdnsmasq configure 0 dns upstream server 8.8.8.8

To see a list of all DHCP options:

\tdnsmasq configure 0 options

To add a DHCP option:

\tdnsmasq configure 0 options option:dns-server,172.17.0.254"""


@command(
    "dnsmasq",
    "dnsmasq start <listen address> <low dhcp range> <high dhcp range> [config]",
    "dnsmasq start <config>",
    "dnsmasq kill <id or all>",
    short="start a dhcp/dns server on a specified ip",
    long=_LONG,
)
async def dnsmasq(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliDnsmasq``: start, kill or list."""
    table = ctx.state.dnsmasq
    which = cmd.arg("id")
    if which == WILDCARD:
        await table.kill_all()
        return None
    if which:
        server_id = go_atoi(which)
        if server_id is None:
            raise CommandError(f'strconv.Atoi: parsing "{which}": invalid syntax')
        await table.kill(server_id)
        return None
    if cmd.arg("listen") or cmd.arg("config"):
        await table.start(cmd.arg("listen"), cmd.arg("low"), cmd.arg("high"), cmd.arg("config"))
        return None
    rows = [
        [str(s.id), s.addr, s.min_range, s.max_range, str(s.path), str(s.pid())]
        for s in table.sorted()
    ]
    return ctx.table(HEADER, rows)


def _targets(table: Dnsmasqs, which: str) -> list[Server]:
    if which == WILDCARD:
        return table.sorted()
    server_id = go_atoi(which)
    if server_id is None:
        raise CommandError("invalid dnsmasq ID")
    return [table.get(server_id)]


@command(
    "dnsmasq configure <ID> <ip,>",
    "dnsmasq configure <ID> <ip,> <mac address> <ip>",
    "dnsmasq configure <ID> <dns,>",
    "dnsmasq configure <ID> <dns,> <ip> <hostname>",
    "dnsmasq configure <ID> <dns,> <upstream,>",
    "dnsmasq configure <ID> <dns,> <upstream,> server <ip>",
    "dnsmasq configure <ID> <options,>",
    "dnsmasq configure <ID> <options,> <optionstring>",
    short="configure dhcp/dns options",
    long=_CONFIGURE_LONG,
)
async def dnsmasq_configure(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliDnsmasqConfigure``: set, or list, leases, names, upstreams, options."""
    table = ctx.state.dnsmasq
    servers = _targets(table, cmd.arg("ID"))
    ip = cmd.arg("ip")
    if cmd.flag("ip"):
        mac = cmd.arg("mac")
        if mac and ip:
            await table.set_host(servers, mac, ip)
            return None
        rows = [[str(s.id), m, i] for s in servers for m, i in s.dhcp_hosts.items()]
        return ctx.table(["id", "mac", "ip"], rows)
    if cmd.flag("upstream"):
        if ip:
            await table.add_upstream(servers, ip)
            return None
        rows = [[str(s.id), u] for s in servers for u in s.upstreams]
        return ctx.table(["id", "upstream server"], rows)
    if cmd.flag("dns"):
        hostname = cmd.arg("hostname")
        if hostname and ip:
            await table.set_dns(servers, ip, hostname)
            return None
        rows = [[str(s.id), i, h] for s in servers for i, h in s.hostnames.items()]
        return ctx.table(["id", "ip", "hostname"], rows)
    option = cmd.arg("optionstring")
    if option:
        await table.add_option(servers, option)
        return None
    rows = [[str(s.id), o] for s in servers for o in s.options]
    return ctx.table(["id", "option"], rows)


@on_clear_all(5)
async def _clear_all(ctx: Context) -> None:
    # 2.8's clear all runs "dnsmasq kill all" right after "clear deploy flags"
    await ctx.state.dnsmasq.kill_all()
