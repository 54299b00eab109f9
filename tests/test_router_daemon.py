"""The router daemon (``python -m megabus.router``) for real, inside network namespaces.

Each test builds its own namespaces joined by veth pairs (:class:`Lab`), runs
real daemons in them (with dnsmasq, BIRD 2, iptables and dhclient under
them), hands them configs the way the node's cc command does (``-u FILE``,
lines as 2.8's node writes them) and checks with traffic: DHCP leases, DNS
answers, pings across static and OSPF routes, TCP through the firewall, a
BGP prefix, SLAAC from router advertisements. A missing program fails the
test with the package to install.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from routerlab import PATH, Daemon, Lab, require, wait_for

pytestmark = pytest.mark.timeout(90)

MAC_A = "00:1f:53:02:0b:51"
MAC_B = "00:1f:53:02:0b:52"


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    require("ip", "iptables", "iptables-restore", "dnsmasq", "bird", "birdc", "dhclient", "sysctl")
    assert os.geteuid() == 0, "the router tests need root (network namespaces)"
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.close()


async def route_n(lab: Lab, ns: str) -> str:
    return await lab.must(ns, "route", "-n")


async def ping(lab: Lab, ns: str, target: str, count: int = 4) -> str:
    _, out = await lab.sh(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", target)
    return out


# -- static routes, DHCP clients: 2.8's router_static script ---------------------------------

ROUTER_A = """\
log level error
ip flush
ip add 0 1.0.0.1/24
ip add 1 2.0.0.1/24
dnsmasq flush
dnsmasq dhcp static 1.0.0.0 00:1f:53:02:0b:51 1.0.0.3
route del default
dnsmasq commit
bird flush
bird static 3.0.0.0/24 2.0.0.2 null
bird routerid 2.0.0.1
bird commit
"""

ROUTER_B = """\
log level error
ip flush
ip add 0 2.0.0.2/24
ip add 1 3.0.0.2/24
dnsmasq flush
dnsmasq dhcp static 3.0.0.0 00:1f:53:02:0b:52 3.0.0.3
route del default
dnsmasq commit
bird flush
bird static 1.0.0.0/24 2.0.0.1 null
bird routerid 3.0.0.2
bird commit
"""


def vm(gw: str) -> str:
    """A client's config (``router vmA interface 0 dhcp``, ``router vmA gw <gw>``)."""
    return f"""\
log level error
ip flush
ip add 0 dhcp
dnsmasq flush
route add default gw {gw}
dnsmasq commit
bird flush
bird routerid 0.0.0.0
bird commit
"""


# 2.8's `cc exec route -n` on routerA and routerB (router_static.want, responses 13 and 14)
ROUTE_N_A = """\
Kernel IP routing table
Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
1.0.0.0         0.0.0.0         255.255.255.0   U     0      0        0 veth0
2.0.0.0         0.0.0.0         255.255.255.0   U     0      0        0 veth1
3.0.0.0         2.0.0.2         255.255.255.0   UG    0      0        0 veth1
"""
ROUTE_N_B = """\
Kernel IP routing table
Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
1.0.0.0         2.0.0.1         255.255.255.0   UG    0      0        0 veth0
2.0.0.0         0.0.0.0         255.255.255.0   U     0      0        0 veth0
3.0.0.0         0.0.0.0         255.255.255.0   U     0      0        0 veth1
"""


async def test_static_routes_join_three_lans_and_clients_lease_by_mac(lab: Lab) -> None:
    require("route", "ping")
    ra, rb, va, vb = [await lab.netns(n) for n in ("ra", "rb", "va", "vb")]
    await lab.link(ra, "veth0", va, "veth0", b_mac=MAC_A)
    await lab.link(ra, "veth1", rb, "veth0")
    await lab.link(rb, "veth1", vb, "veth0", b_mac=MAC_B)
    for ns in (ra, rb):
        # what the image's preinit does for a router container
        await lab.must(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    da, db = await asyncio.gather(lab.daemon(ra, "ra"), lab.daemon(rb, "rb"))
    await asyncio.gather(da.must_apply(ROUTER_A), db.must_apply(ROUTER_B))
    # the clients are routers too (2.8's vmA/vmB): dhclient through their daemons
    dva, dvb = await asyncio.gather(lab.daemon(va, "va"), lab.daemon(vb, "vb"))
    await asyncio.gather(dva.must_apply(vm("1.0.0.1")), dvb.must_apply(vm("3.0.0.2")))

    assert "inet 1.0.0.3/24" in await lab.must(va, "ip", "-4", "addr", "show", "veth0")
    assert "inet 3.0.0.3/24" in await lab.must(vb, "ip", "-4", "addr", "show", "veth0")

    async def routes_in() -> bool:
        return (await route_n(lab, ra)) == ROUTE_N_A and (await route_n(lab, rb)) == ROUTE_N_B

    await wait_for(routes_in, 20, "BIRD's static routes in the kernel")
    assert "4 packets transmitted, 4 received" in await ping(lab, va, "3.0.0.3")
    assert "4 packets transmitted, 4 received" in await ping(lab, vb, "1.0.0.3")

    # the same config again changes nothing: bird and dnsmasq keep running as they were
    pids = [(da.path / f).read_text() for f in ("bird.pid", "dnsmasq.pid")]
    await da.must_apply(ROUTER_A)
    assert [(da.path / f).read_text() for f in ("bird.pid", "dnsmasq.pid")] == pids
    # (`ip flush` took the route's next hop away for a moment: bird puts the route back)
    await wait_for(routes_in, 20, "BIRD's static routes back in the kernel")

    # a new config replaces the old one: address, static route, lease all go
    await da.must_apply(
        "log level error\nip flush\nip add 0 1.0.0.9/24\nip add 1 2.0.0.1/24\n"
        "dnsmasq flush\nroute del default\ndnsmasq commit\n"
        "bird flush\nbird routerid 2.0.0.1\nbird commit\n"
    )
    addrs = await lab.must(ra, "ip", "-4", "addr", "show", "veth0")
    assert "1.0.0.9/24" in addrs
    assert "1.0.0.1/" not in addrs
    assert "3.0.0.0" not in await route_n(lab, ra)
    assert "dhcp-host" not in (da.path / "dnsmasq.conf").read_text()
    for d in (da, db, dva, dvb):
        assert d.alive


# -- DHCP and DNS --------------------------------------------------------------------------

DHCP_DNS = """\
log level error
ip flush
ip add 0 1.2.3.4/24
ip add 1 5.6.7.8/24
dnsmasq flush
dnsmasq dhcp range 1.2.3.4 1.2.3.5 1.2.3.254
dnsmasq dhcp option router 1.2.3.4 1.2.3.1
dnsmasq dhcp option dns 1.2.3.4 1.2.3.4
dnsmasq dhcp static 1.2.3.4 00:11:22:33:44:55 1.2.3.66
dnsmasq dhcp range 5.6.7.8 5.6.7.100 5.6.7.110
dnsmasq dhcp option router 5.6.7.8 5.6.7.8
dnsmasq dns 1.1.1.1 foo.com
dnsmasq dns 2.2.2.2 bar.com
dnsmasq dns 2.2.2.3 bar.com
route del default
dnsmasq commit
bird flush
bird routerid 5.6.7.8
bird commit
"""


async def test_dhcp_leases_and_dns_records(lab: Lab) -> None:
    require("nslookup", "dig")
    r, c1, c2 = [await lab.netns(n) for n in ("r", "c1", "c2")]
    await lab.link(r, "veth0", c1, "veth0", b_mac="00:11:22:33:44:55")
    await lab.link(r, "veth1", c2, "veth0")
    d = await lab.daemon(r, "r")
    await d.must_apply(DHCP_DNS)

    async def lease(ns: str) -> None:
        await lab.must(
            ns, "dhclient", "-1", "-v",
            "-pf", str(lab.tmp / f"{ns}.pid"), "-lf", str(lab.tmp / f"{ns}.leases"), "veth0",
            limit=40,
        )  # fmt: skip

    await asyncio.gather(lease(c1), lease(c2))
    # the static lease by MAC, with the router option
    assert "inet 1.2.3.66/24" in await lab.must(c1, "ip", "-4", "addr", "show", "veth0")
    assert "default via 1.2.3.1 " in await lab.must(c1, "ip", "-4", "route", "show", "default")
    # a lease from the range of the other listen address
    out = await lab.must(c2, "ip", "-4", "-o", "addr", "show", "veth0")
    got = out.split("inet ")[1].split("/")[0]
    assert got.startswith("5.6.7."), out
    assert 100 <= int(got.split(".")[-1]) <= 110, out
    assert "default via 5.6.7.8 " in await lab.must(c2, "ip", "-4", "route", "show", "default")
    assert "00:11:22:33:44:55" in (d.path / "dnsmasq.leases").read_text()

    # DNS, as the router compat script asks it (Debian's nslookup also asks for AAAA)
    _, out = await lab.sh(c1, "nslookup", "foo.com", "1.2.3.4")
    assert "Name:\tfoo.com\nAddress: 1.1.1.1\n" in out, out
    assert "** server can't find foo.com: REFUSED" in out, out
    answers = await lab.must(c2, "dig", "+short", "+time=2", "+tries=2", "@5.6.7.8", "bar.com", "A")
    assert sorted(answers.split()) == ["2.2.2.2", "2.2.2.3"]

    # dynamic update: a new config without foo.com
    await d.must_apply(DHCP_DNS.replace("dnsmasq dns 1.1.1.1 foo.com\n", ""))
    answers = await lab.must(c2, "dig", "+short", "+time=2", "+tries=2", "@5.6.7.8", "foo.com", "A")
    assert answers.strip() == ""
    assert d.alive


# -- the firewall --------------------------------------------------------------------------

LISTENER = """\
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"hi")
        c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait(300)
"""

CONNECT = """\
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(s.recv(16).decode())
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as err:
    print("error", err)
"""

FW_ADDRS = "log level error\nip flush\nip add 0 10.1.0.1/24\nip add 1 10.2.0.1/24\n"

# -P FORWARD DROP and the documented rule (section 6.3), plus 2.8's ESTABLISHED chain
FW_DROP_RULES = """\
-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N ESTABLISHED
-A FORWARD -j ESTABLISHED
-A FORWARD -d 10.2.0.2/32 -o veth1 -p tcp -m tcp --dport 8080 -j ACCEPT
-A ESTABLISHED -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ESTABLISHED -p udp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ESTABLISHED -p icmp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ESTABLISHED -j RETURN
"""


async def test_firewall_lets_one_port_through_and_a_new_config_restores_traffic(
    lab: Lab,
) -> None:
    r, c1, c2 = [await lab.netns(n) for n in ("r", "c1", "c2")]
    await lab.link(r, "veth0", c1, "veth0")
    await lab.link(r, "veth1", c2, "veth0")
    for ns, addr, gw in ((c1, "10.1.0.2/24", "10.1.0.1"), (c2, "10.2.0.2/24", "10.2.0.1")):
        await lab.must(ns, "ip", "addr", "add", addr, "dev", "veth0")
        await lab.must(ns, "ip", "route", "add", "default", "via", gw)
    await lab.must(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    await lab.spawn(c2, sys.executable, "-c", LISTENER, "8080", "8081")
    d = await lab.daemon(r, "r")

    async def connect(port: int) -> str:
        return (await lab.must(c1, sys.executable, "-c", CONNECT, "10.2.0.2", str(port))).strip()

    async def listening() -> bool:
        return await connect(8081) == "hi"

    await d.must_apply(FW_ADDRS)
    await wait_for(listening, 15, "the listeners in c2")

    await d.must_apply(FW_ADDRS + "fw flush\nfw default drop\nfw accept out 1 10.2.0.2:8080 tcp\n")
    assert await lab.must(r, "iptables", "-S") == FW_DROP_RULES
    assert await connect(8080) == "hi"
    assert await connect(8081) == "timeout"
    assert "0 received" in await ping(lab, c1, "10.2.0.2", count=1)

    # a chain: drops 8080, refuses 8081 (from c1's network only), accepts the rest
    await d.must_apply(
        FW_ADDRS + "fw flush\nfw default accept\n"
        "fw chain web action drop 10.2.0.2:8080 tcp\n"
        "fw chain web action reject 10.1.0.0/24 10.2.0.2:8081 tcp\n"
        "fw chain web default action accept\n"
        "fw chain web apply out 1\n"
    )
    rules = await lab.must(r, "iptables", "-S")
    assert "-A FORWARD -o veth1 -j web\n" in rules
    assert (
        "-A web -d 10.2.0.2/32 -p tcp -m tcp --dport 8080 -j DROP\n"
        "-A web -s 10.1.0.0/24 -d 10.2.0.2/32 -p tcp -m tcp --dport 8081"
        " -j REJECT --reject-with icmp-port-unreachable\n"
        "-A web -j ACCEPT\n"
    ) in rules
    assert await connect(8080) == "timeout"
    assert await connect(8081) == "refused"
    assert "1 received" in await ping(lab, c1, "10.2.0.2", count=1)

    # a config without rules replaces all of them, chains included
    await d.must_apply(FW_ADDRS + "fw flush\nfw default accept\n")
    rules = await lab.must(r, "iptables", "-S")
    assert "web" not in rules
    assert "-P FORWARD ACCEPT" in rules
    assert await connect(8080) == "hi"
    assert await connect(8081) == "hi"
    assert "1 received" in await ping(lab, c1, "10.2.0.2", count=1)
    assert d.alive


# -- OSPF and BGP --------------------------------------------------------------------------


def dynamic(me: int, lan: int, link: int, other: int, bgp_filter: str) -> str:
    """Router ``me``'s config: OSPF on both interfaces, eBGP to the other router."""
    return f"""\
log level error
ip flush
ip add {lan} 10.0.{me}.1/24
ip add {link} 10.0.12.{me}/24
ip add lo 10.255.0.{me}/32
dnsmasq flush
route del default
dnsmasq commit
bird flush
bird static 10.9{me}.0.0/24 null ext
bird static 10.8{me}.0.0/24 null lan
bird ospf 0 {lan} "stub" "yes"
bird ospf 0 {link} "type" "ptp"
bird ospf 0 {link} "hello" "1"
bird ospf 0 {link} "dead" "4"
bird ospf 0 filter ext
bird bgp peer local 10.0.12.{me} 6500{me}
bird bgp peer neighbor 10.0.12.{other} 6500{other}
bird bgp peer filter {bgp_filter}
bird routerid 10.255.0.{me}
bird commit
"""


async def test_ospf_adjacency_and_a_bgp_prefix(lab: Lab) -> None:
    ra, rb, ca, cb = [await lab.netns(n) for n in ("ra", "rb", "ca", "cb")]
    await lab.link(ra, "veth0", ca, "veth0")
    await lab.link(ra, "veth1", rb, "veth0")
    await lab.link(rb, "veth1", cb, "veth0")
    for ns, me in ((ca, 1), (cb, 2)):
        await lab.must(ns, "ip", "addr", "add", f"10.0.{me}.2/24", "dev", "veth0")
        await lab.must(ns, "ip", "route", "add", "default", "via", f"10.0.{me}.1")
    for ns in (ra, rb):
        await lab.must(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    da, db = await asyncio.gather(lab.daemon(ra, "ra"), lab.daemon(rb, "rb"))
    # A announces its "lan" set over BGP; B announces only what BGP taught it ("all")
    await asyncio.gather(
        da.must_apply(dynamic(1, lan=0, link=1, other=2, bgp_filter="lan")),
        db.must_apply(dynamic(2, lan=1, link=0, other=1, bgp_filter="all")),
    )

    async def birdc(d: Daemon, *args: str) -> str:
        return await lab.must(d.ns, "birdc", "-s", str(d.path / "bird.ctl"), *args)

    async def full() -> bool:
        return "Full" in await birdc(da, "show", "ospf", "neighbors")

    await wait_for(full, 30, "an OSPF adjacency between the two routers")

    async def route(ns: str, prefix: str, via: str) -> bool:
        out = await lab.must(ns, "ip", "-4", "route", "show", prefix)
        return f"via {via} " in out and "proto bird" in out

    async def learned() -> bool:
        return (
            await route(ra, "10.0.2.0/24", "10.0.12.2")
            and await route(rb, "10.0.1.0/24", "10.0.12.1")
            # A's "ext" set, exported into OSPF by `bird ospf 0 filter ext`
            and await route(rb, "10.91.0.0/24", "10.0.12.1")
        )

    await wait_for(learned, 30, "OSPF routes in both kernels")
    assert "4 packets transmitted, 4 received" in await ping(lab, ca, "10.0.2.2")

    async def bgp() -> bool:
        return await route(rb, "10.81.0.0/24", "10.0.12.1")

    await wait_for(bgp, 40, "A's BGP prefix 10.81.0.0/24 in B's kernel")
    shown = await birdc(db, "show", "route", "10.81.0.0/24", "protocol", "peer")
    assert "10.81.0.0/24" in shown, shown
    assert "[peer " in shown, shown
    assert "[AS65001i]" in shown, shown
    # B exports only BGP-learned routes ("all"): its own "lan" set stays home
    assert "10.82.0.0" not in await lab.must(ra, "ip", "-4", "route")
    assert da.alive
    assert db.alive


# -- router advertisements ---------------------------------------------------------------


def has_ipv6() -> bool:
    return Path("/proc/sys/net/ipv6").is_dir()


async def test_router_advertisements_give_a_client_an_ipv6_address(lab: Lab) -> None:
    assert has_ipv6(), "this kernel has no IPv6 (/proc/sys/net/ipv6): RA cannot work"
    r, c = [await lab.netns(n) for n in ("r", "c")]
    await lab.link(r, "veth0", c, "veth0")
    d = await lab.daemon(r, "r")
    await d.must_apply(
        "log level error\nip flush\nip add 0 2001:db8:1::1/64\n"
        "dnsmasq flush\nroute del default\ndnsmasq ra 2001:db8:1::\ndnsmasq commit\n"
    )
    assert "dhcp-range=2001:db8:1::,ra-names" in (d.path / "dnsmasq.conf").read_text()

    async def slaac() -> bool:
        out = await lab.must(c, "ip", "-6", "addr", "show", "dev", "veth0", "scope", "global")
        return "inet6 2001:db8:1:0:" in out

    await wait_for(slaac, 30, "a SLAAC address from the router's advertisements")
    assert "default via fe80::" in await lab.must(c, "ip", "-6", "route", "show", "default")
    assert d.alive


# -- bad input ------------------------------------------------------------------------------


def exchange(path: Path, data: bytes) -> str:
    """Send ``data`` on the daemon's socket as a client would; the daemon's whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path / "minirouter"))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon stopped reading (too much): its answer is still there
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # it hung up on unread input: what it said before is all there is
    return answer.decode(errors="replace")


async def raw_exchange(path: Path, data: bytes) -> str:
    return await asyncio.to_thread(exchange, path, data)


async def test_bad_lines_are_reported_by_line_and_the_daemon_keeps_running(lab: Lab) -> None:
    r, x = [await lab.netns(n) for n in ("r", "x")]
    await lab.link(r, "veth0", x, "veth0")
    d = await lab.daemon(r, "r", PATH, "-dhcp-wait", "2")
    code, out = await d.apply(
        "ip add 0 1.2.3.4/33\n"
        "ip add 7 10.0.0.1/24\n"
        "frobnicate the router\n"
        "dnsmasq dhcp static 1.2.3.4 zz:11 1.2.3.5\n"
        "bird static 10.0.0.0/24 null null\n"
        'bird ospf 0 0 "hello 1\n'
        "fw accept in 0 1.2.3.4:http tcp\n"
        "fw accept in 0 1.2.3.4 bogus\n"
        "ip add 0 10.9.9.1/24\n"
        "ip add 0 dhcp\n"
    )
    assert code == 1
    lines = out.splitlines()
    assert (
        lines[0]
        == "line 1: ip add 0 1.2.3.4/33: bad address '1.2.3.4/33': '33' is not a valid netmask"
    )
    assert lines[1] == (
        "line 2: ip add 7 10.0.0.1/24: no such network: index 7 (this router has 1: 0=veth0)"
    )
    assert lines[2].startswith("line 3: frobnicate the router: unknown command 'frobnicate'")
    assert lines[3].startswith("line 4: dnsmasq dhcp static 1.2.3.4 zz:11 1.2.3.5: bad MAC")
    assert (
        "line 5: bird static 10.0.0.0/24 null null: an unnamed static route needs a next hop"
        in lines
    )
    assert lines[5] == 'line 6: bird ospf 0 0 "hello 1: unterminated " quote'
    assert lines[6].startswith("line 7: fw accept in 0 1.2.3.4:http tcp: bad destination port")
    # nobody answers DHCP on x's side
    assert lines[7] == (
        "line 10: ip add 0 dhcp: no DHCP lease on veth0 within 2s"
        " (dhclient keeps trying in the background)"
    )
    # the firewall loads at the end of the config: its failures come last
    assert lines[8].startswith("line 8: fw accept in 0 1.2.3.4 bogus: iptables refused the rule:")
    assert 'unknown protocol "bogus"' in lines[8]
    assert len(lines) == 9, out
    # the good line ran
    assert "10.9.9.1/24" in await lab.must(r, "ip", "-4", "addr", "show", "veth0")

    # garbage on the socket: every line fails, nothing breaks
    answer = await raw_exchange(d.path, os.urandom(3000) + b"\n\x00\xff\xfe garbage\n")
    assert answer.splitlines()[-1].startswith("done "), answer
    # more than a config may hold: refused whole
    answer = await raw_exchange(d.path, b"ip flush\n" * 200_000)
    assert answer.startswith("error: config larger than"), answer[:200]
    code, out = await d.apply("ip add 0 1.2.3.4/24\n" + "\n" * (2 << 20))
    assert code == 2
    assert "larger than" in out

    # a client that connects and sends nothing holds up no one
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(d.path / "minirouter"))
        await d.must_apply("log level error\nip add 0 10.9.9.2/24\n")
    assert "10.9.9.2/24" in await lab.must(r, "ip", "-4", "addr", "show", "veth0")

    # a second daemon on the same folder refuses to start; -u with no daemon says so
    code, out = await lab.sh(r, sys.executable, "-m", "megabus.router", "-path", str(d.path))
    assert code == 1
    assert "appears to already be running" in out
    empty = lab.tmp / "nobody"
    empty.mkdir()
    (empty / "cfg").write_text("ip flush\n")
    code, out = await lab.sh(
        r, sys.executable, "-m", "megabus.router", "-u", str(empty / "cfg"),
        "-path", str(empty), "-wait", "0.5",
    )  # fmt: skip
    assert code == 2
    assert "no router daemon at" in out
    assert d.alive
    assert "Traceback" not in d.log()


async def test_missing_programs_are_clear_errors(lab: Lab) -> None:
    r, x = [await lab.netns(n) for n in ("r", "x")]
    await lab.link(r, "veth0", x, "veth0")
    # a PATH with `ip` and nothing else the router runs
    bare = lab.tmp / "bin"
    bare.mkdir()
    (bare / "ip").symlink_to(shutil.which("ip", path=PATH) or "/usr/sbin/ip")
    d = await lab.daemon(r, "r", str(bare))
    code, out = await d.apply(
        "ip flush\nip add 0 dhcp\ndnsmasq flush\ndnsmasq commit\nbird flush\nbird commit\n"
        "fw flush\nip add 0 10.7.7.1/24\n"
    )
    assert code == 1
    assert out.splitlines() == [
        "line 2: ip add 0 dhcp: dhclient is not installed (not found on PATH)",
        "line 4: dnsmasq commit: dnsmasq is not installed (not found on PATH)",
        "line 6: bird commit: bird is not installed (not found on PATH)",
        "line 7: fw flush: firewall not loaded: iptables-restore is not installed"
        " (not found on PATH)",
    ]
    assert "10.7.7.1/24" in await lab.must(r, "ip", "-4", "addr", "show", "veth0")
    assert d.alive


# -- tags through the agent ------------------------------------------------------------------


async def test_counters_and_the_log_reach_the_agent_as_tags(lab: Lab) -> None:
    r, x = [await lab.netns(n) for n in ("r", "x")]
    await lab.link(r, "veth0", x, "veth0")
    agent = lab.tmp / "agent"
    agent.mkdir()
    tags: dict[str, str] = {}

    # the agent's control socket (megabus.agent.client): one JSON line, answer "ok"
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key, value = json.loads(await reader.readline())["tag"]
        tags[key] = value
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(agent / "miniccc"))
    try:
        d = await lab.daemon(r, "r", PATH, "-agent", str(agent), "-stats", "1")
        code, _ = await d.apply("log level error\nip add 0 10.3.0.1/24\nfrobnicate\n")
        assert code == 1

        async def tagged() -> bool:
            return (
                "minirouter_veth0_rx_bytes" in tags
                and tags.get("minirouter_veth0_tx_bytes", "").isdigit()
                and "frobnicate" in tags.get("minirouter_log", "")
            )

        await wait_for(tagged, 15, "the router's tags at the agent")
        assert "minirouter_lo_rx_bytes" not in tags
    finally:
        server.close()
        await server.wait_closed()
