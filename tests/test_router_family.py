"""The ``router`` family on a node: 2.8's texts and errors, the commit's delivery, real traffic.

The first tests need no guest: VMs stand in the node's table
(``routerworld.table_vm``) and the commands' texts, errors and cc commands
are checked; the expected texts are 2.8's (``router.go``'s ``String`` and
``writeConfig``) worked out by hand for the firewall, which 2.8's own
scripts never show. Then real router containers (``minirouterfs``) on a real
Open vSwitch, driven through cc: DHCP (a static lease too), DNS, routing
between two VLANs, router advertisements and a commit that the router cannot
apply; OSPF and BGP between two routers; and the firewall, which 2.8 applies
to KVM routers only, on a KVM router booted under TCG (this host's nested
KVM cannot boot Linux) between two containers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at, transcript
from ovsfix import ovs, unique
from routerworld import Guests, router_images, table_vm

from megabus.bus.server import EmbeddedServer
from megabus.handlers.model.vm import VMType

__all__ = ["ovs"]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[MiniNode]:
    """A test node whose files go to the test's folder (commits write there)."""
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "rt", base=tmp_path / "base") as n,
    ):
        yield n


# -- texts and errors, no guest ------------------------------------------------------------


async def test_bad_input_gets_2_8s_errors_and_the_node_keeps_going(node: MiniNode) -> None:
    r0 = await table_vm(node, "r0", "100 200", VMType.KVM)
    await table_vm(node, "c0", "100")
    await table_vm(node, "fresh", "100")
    bad = {
        "router r0 interface 0 10.0.0.1": "invalid IP: 10.0.0.1",
        "router r0 interface 0 10.0.0.300/24": "invalid IP: 10.0.0.300/24",
        "router r0 interface 0 10.0.0.1/33": "invalid IP: 10.0.0.1/33",
        "router r0 interface 0 10.0.0.1/255.255.255.0": "invalid IP: 10.0.0.1/255.255.255.0",
        "router r0 interface 2 10.0.0.1/24": "no such network index: 2",
        "router r0 interface -1 10.0.0.1/24": "no such network index: -1",
        "router r0 interface two 10.0.0.1/24": (
            'invalid network: two : strconv.Atoi: parsing "two": invalid syntax'
        ),
        "router r0 interface 0 dhcp lo": "Cannot put dhcp on loopback",
        "router r0 rid 1.2.3": "invalid routerid: 1.2.3",
        "router nosuch interface 0 10.0.0.1/24": "vm not found: nosuch",
        "router nosuch": "vm not found: nosuch",
        "router fresh": "vm fresh not a router",
        "clear router nosuch": "no such vm nosuch",
        "clear router fresh dns": "no such router fresh",
        "router r0 fw accept out 5 10.0.1.5 tcp": "no such network index: 5",
        "router r0 fw accept out x 10.0.1.5 tcp": (
            'converting fw interface index: strconv.Atoi: parsing "x": invalid syntax'
        ),
        "router r0 fw accept out 0 10.0.1.5:http tcp": (
            'validating fw destination port http: strconv.Atoi: parsing "http": invalid syntax'
        ),
        "router r0 fw accept out 0 1:2:3 10.0.1.5 tcp": "malformed fw source 1:2:3",
        "router r0 fw chain nope apply in 0": "unknown chain nope",
        "router r0 fw chain web apply in x": (
            'converting fw chain interface index: strconv.Atoi: parsing "x": invalid syntax'
        ),
        "router c0 fw default drop": "firewall rules cannot be applied to minirouter containers",
        "clear router r0 interface 0 10.9.9.9/24": "no such network: 10.9.9.9/24",
        "clear router r0 dhcp 9.9.9.9": "no such address: 9.9.9.9",
        "clear router r0 dns 9.9.9.9": "no such ip: 9.9.9.9",
        "clear router r0 ra 2001::": "no such subnet: 2001::",
        "clear router r0 route static 9.0.0.0/8": "no such static route: 9.0.0.0/8",
        "clear router r0 route static all nope": "no such named static route: nope",
        "clear router r0 route ospf 7": "no such area: 7",
        "clear router r0 route bgp nope": "no such bgp process: nope",
    }
    # `router r0 interface ...` makes r0 a router first, as in 2.8
    assert await node.errors("router r0 interface 0 10.0.0.1/24") == []
    assert await node.errors("router r0 interface 0 10.0.0.1/24") == [
        "IP 10.0.0.1/24 already exists"
    ]
    for line, want in bad.items():
        assert await node.errors(line) == [want], line
    # nothing stuck: the router prints, commits and clears as before
    assert "Network: 0: [10.0.0.1/24]" in await node.text("router r0")
    assert await node.errors("router r0 commit") == []
    assert await node.errors("clear router r0") == []
    assert "Network: 0: []" in await node.text("router r0")
    # 2.8 tags the VM as a router; `clear router` (all) forgets every router
    assert r0.tags["minirouter"] == str(r0.id)
    assert await node.errors("clear router") == []
    assert await node.errors("router r0") == ["vm r0 not a router"]


#: A KVM router's firewall: global rules, a chain applied to an interface, a chain by itself.
FW_SCRIPT = """\
router r0 interface 0 10.0.0.1/24
router r0 fw default drop
router r0 fw accept out 1 10.0.1.5:80 tcp
router r0 fw drop in 0 10.0.0.0/24 10.0.1.5 icmp
router r0 fw chain web action accept 10.0.1.6:443 tcp
router r0 fw chain web apply out 1
router r0 fw chain quiet default action reject
router r0
clear router r0 fw
router r0"""

FW_WANT = """\
## router r0 interface 0 10.0.0.1/24
## router r0 fw default drop
## router r0 fw accept out 1 10.0.1.5:80 tcp
## router r0 fw drop in 0 10.0.0.0/24 10.0.1.5 icmp
## router r0 fw chain web action accept 10.0.1.6:443 tcp
## router r0 fw chain web apply out 1
## router r0 fw chain quiet default action reject
## router r0
IPs:
Network: 0: [10.0.0.1/24]
Network: 1: []

Firewall Rules:
  (iface 0) incoming: 10.0.0.0/24 --> 10.0.1.5 via icmp -> drop
  (iface 1) outgoing: <any> --> 10.0.1.5:80 via tcp -> accept
  (iface 1) outgoing: <any> --> <any> via <any> -> web
  Default Action: drop
Firewall Chains:
  Default Action (quiet): reject
  web: <any> --> 10.0.1.6:443 via tcp -> accept
  Default Action (web): drop
Log:
## clear router r0 fw
## router r0
IPs:
Network: 0: [10.0.0.1/24]
Network: 1: []

Firewall Rules:
  Default Action: accept
Log:
"""

FW_CONFIG = """\
log level error
ip flush
ip add 0 10.0.0.1/24
dnsmasq flush
route del default
dnsmasq commit
bird flush
bird routerid 10.0.0.1
bird commit
fw flush
fw default drop
fw chain quiet default action reject
fw chain web action accept 10.0.1.6:443 tcp
fw chain web default action drop
fw drop in 0 10.0.0.0/24 10.0.1.5 icmp
fw accept out 1 10.0.1.5:80 tcp
fw chain web apply out 1
"""


async def test_kvm_router_firewall_summary_and_config(node: MiniNode) -> None:
    await table_vm(node, "r0", "100 200", VMType.KVM)
    assert await transcript(node, FW_SCRIPT) == FW_WANT
    lines = FW_SCRIPT.splitlines()[1:7]
    for line in lines:
        assert await node.errors(line) == []
    assert await node.errors("router r0 commit") == []
    files = Path(node.state.settings.files_dir)
    assert (files / "minirouter-r0").read_text() == FW_CONFIG
    # the IPs went out with that commit: the next one leaves the router's addresses alone
    assert await node.errors("router r0 commit") == []
    assert "ip " not in (files / "minirouter-r0").read_text()


async def _router_id(node: MiniNode, name: str) -> str:
    assert await node.errors(f"router {name} commit") == []
    text = (Path(node.state.settings.files_dir) / f"minirouter-{name}").read_text()
    (rid,) = re.findall(r"^bird routerid (\S+)$", text, re.M)
    return rid


async def test_router_id_rule(node: MiniNode) -> None:
    await table_vm(node, "r0", "100 200", VMType.KVM)
    for line in ("interface 0 fd00::1/64", "interface 1 10.5.0.1/24", "interface 0 10.9.0.1/24"):
        assert await node.errors(f"router r0 {line}") == []
    # the highest interface address (IPv4: BIRD takes no IPv6 router ID)
    assert await _router_id(node, "r0") == "10.9.0.1"
    # once chosen it stays, even when a loopback would now win
    assert await node.errors("router r0 interface 7 10.0.0.2/32 lo") == []
    assert await _router_id(node, "r0") == "10.9.0.1"
    # cleared, it is chosen again: the highest loopback beats every interface
    assert await node.errors("clear router r0 rid") == []
    assert await _router_id(node, "r0") == "10.0.0.2"
    # and `rid` sets it
    assert await node.errors("router r0 rid 1.1.1.1") == []
    assert await _router_id(node, "r0") == "1.1.1.1"
    # no IPv4 address at all: 0.0.0.0, which the router daemon reads as "pick one"
    await table_vm(node, "r6", "100")
    assert await node.errors("router r6 interface 0 fd00::6/64") == []
    assert await _router_id(node, "r6") == "0.0.0.0"


async def test_commit_queues_three_commands_for_the_router_only(node: MiniNode) -> None:
    vm = await table_vm(node, "c0", "100")
    other = await table_vm(node, "x0", "100", namespace="lab")
    # what the user set for their own cc commands does not touch the router's
    assert await node.errors("cc prefix mine") == []
    assert await node.errors("cc filter hostname=elsewhere") == []
    await node.errors("router c0 interface 0 10.1.0.1/24")
    # no agent is connected: 2.8 queues the delivery (router_static commits before `vm start`)
    assert await node.errors("router c0 commit") == []
    rows = next(r.tabular for b in await node.run("cc commands") for r in b)
    assert rows is not None
    got = [(row[0], row[1], row[2], row[6], row[10]) for row in rows]
    only = f"uuid={vm.uuid}"
    assert got == [
        ("1", "minirouter-c0", "[rm /tmp/miniccc/files/minirouter-c0]", "[]", only),
        ("2", "minirouter-c0", "[]", "[minirouter-c0]", only),
        ("3", "minirouter-c0", "[minirouter -u /tmp/miniccc/files/minirouter-c0]", "[]", only),
    ]
    # a second commit replaces the first one's commands
    assert await node.errors("router c0 commit") == []
    rows = next(r.tabular for b in await node.run("cc commands") for r in b)
    assert rows is not None
    assert [row[0] for row in rows] == ["4", "5", "6"]
    files = Path(node.state.settings.files_dir)
    assert (files / "minirouter-c0").read_text().startswith("log level error\n")
    # outside the default namespace the file goes to <files>/<namespace>/
    assert await node.errors("namespace lab router x0 commit") == []
    assert (files / "lab" / "minirouter-x0").is_file()
    assert other.tags["minirouter"] == str(other.id)


# -- real routers on a real switch ---------------------------------------------------------


@pytest.fixture(scope="module")
def routerfs() -> Path:
    fs = router_images() / "minirouterfs"
    assert (fs / "init").is_file()
    return fs


@pytest.fixture
async def guests(cnode: MiniNode, routerfs: Path) -> Guests:
    g = Guests(cnode)
    await g.ok(f"vm config filesystem {routerfs}")
    return g


async def launch(g: Guests, routerfs: Path, name: str, nets: str, router: bool = True) -> None:
    """A container from minirouterfs; a router's preinit turns forwarding on (a host's stays off,
    so that it takes router advertisements)."""
    if router:
        await g.ok(f"vm config preinit {routerfs}/preinit")
    else:
        await g.ok("clear vm config preinit")
    await g.ok(f"vm config net {nets}", f"vm launch container {name}")


MAC_STATIC = "00:1f:53:91:00:77"


@pytest.mark.usefixtures("ovs")
@pytest.mark.timeout(240)
async def test_router_between_two_vlans_serves_dhcp_dns_ra_and_reports_failures(
    guests: Guests, routerfs: Path
) -> None:
    g = guests
    br = unique("mbr")
    await launch(g, routerfs, "r", f"{br},2901 {br},2902")
    await launch(g, routerfs, "h1", f"{br},2901,{MAC_STATIC}", router=False)
    await launch(g, routerfs, "h2", f"{br},2902", router=False)
    await g.ok("vm start all")
    await g.configure(
        "r",
        "interface 0 10.91.1.1/24",
        "interface 0 fd91::1/64",
        "interface 1 10.91.2.1/24",
        "dhcp 10.91.1.1 range 10.91.1.100 10.91.1.120",
        "dhcp 10.91.1.1 router 10.91.1.1",
        "dhcp 10.91.1.1 dns 10.91.1.1",
        f"dhcp 10.91.1.1 static {MAC_STATIC} 10.91.1.77",
        "dhcp 10.91.2.1 range 10.91.2.100 10.91.2.120",
        "dhcp 10.91.2.1 router 10.91.2.1",
        "dns 10.91.9.9 db.example",
        "ra fd91::",
    )
    done = await g.applied("r")
    assert done.code == 0, done

    # leases: the static one by MAC, the other from the range on the other VLAN
    await g.must("h1", "dhclient -1 veth0")
    await g.must("h2", "dhclient -1 veth0")
    h1 = await g.must("h1", "ip -4 -o addr show dev veth0")
    h2 = await g.must("h2", "ip -4 -o addr show dev veth0")
    assert "inet 10.91.1.77/24" in h1
    m = re.search(r"inet (10\.91\.2\.(\d+))/24", h2)
    assert m is not None, h2
    assert 100 <= int(m.group(2)) <= 120, h2
    # across the router, by the default route the lease gave
    await g.must("h1", f"ping -c 2 -W 2 {m.group(1)}")
    # the router answers for its DNS entries
    answer = await g.must("h1", "dig +short +time=2 +tries=3 @10.91.1.1 db.example")
    assert answer.strip() == "10.91.9.9"
    # router advertisements: h1 makes itself an address in fd91::/64 (SLAAC)
    await g.until("h1", "ip -6 -o addr show dev veth0 scope global", "inet6 fd91::")

    # a config the router cannot apply: the failed line is the commit's cc response
    await g.configure("r", "route static 10.99.0.0/24 not-a-hop")
    failed = await g.applied("r")
    assert failed.code == 1
    assert "bird static 10.99.0.0/24 not-a-hop null" in failed.stdout + failed.stderr
    shown = await g.node.text("cc responses minirouter-r raw")
    assert "not-a-hop" in shown
    # the rest of that config was applied, and the node goes on
    answer = await g.must("h1", "dig +short +time=2 +tries=3 @10.91.1.1 db.example")
    assert answer.strip() == "10.91.9.9"
    assert "Static Routes:\n10.99.0.0/24\tnot-a-hop" in await g.node.text("router r")

    # clear all (which destroys the namespaces) forgets the routers
    ns = g.node.state.namespace("minimega")
    assert list(ns.routers) == [g.vm("r").id]
    await g.ok("clear all")
    assert ns.routers == {}


@pytest.mark.usefixtures("ovs")
@pytest.mark.timeout(240)
async def test_two_routers_form_an_ospf_adjacency_and_exchange_a_bgp_prefix(
    guests: Guests, routerfs: Path
) -> None:
    g = guests
    br = unique("mbr")
    # r1: LAN 10.92.1.0/24 and the transit 10.92.0.0/24; r2: the transit and LAN 10.92.2.0/24
    await launch(g, routerfs, "r1", f"{br},2911 {br},2910")
    await launch(g, routerfs, "r2", f"{br},2910 {br},2912")
    await g.ok("vm start all")
    await g.configure(
        "r1",
        "interface 0 10.92.1.1/24",
        "interface 1 10.92.0.1/24",
        "route ospf 0 0",
        # point to point: no DR election, so the adjacency is up in seconds, not 40
        "route ospf 0 1 type ptp",
        # a prefix r1 announces over BGP only (named static route without a next hop)
        "route static 10.77.0.0/24 0 out1",
        "route bgp peer local 10.92.0.1 65001",
        "route bgp peer neighbor 10.92.0.2 65002",
        "route bgp peer export filter out1",
    )
    await g.configure(
        "r2",
        "interface 0 10.92.0.2/24",
        "interface 1 10.92.2.1/24",
        "route ospf 0 0 type ptp",
        "route ospf 0 1",
        "route bgp peer local 10.92.0.2 65002",
        "route bgp peer neighbor 10.92.0.1 65001",
    )
    for r in ("r1", "r2"):
        done = await g.applied(r)
        assert done.code == 0, done
    await g.until("r1", "birdc show ospf neighbors", "Full")
    # each learned the other's LAN from OSPF, into the kernel table
    learned = await g.until("r1", "ip route show 10.92.2.0/24", "via 10.92.0.2")
    assert "proto bird" in learned
    learned = await g.until("r2", "ip route show 10.92.1.0/24", "via 10.92.0.1")
    assert "proto bird" in learned
    # BGP: the session is up and r2 has r1's prefix from it
    await g.until("r2", "birdc show protocols peer", "Established")
    routes = await g.until("r2", "birdc show route 10.77.0.0/24", "10.77.0.0/24")
    assert "peer" in routes or "BGP" in routes, routes
    learned = await g.until("r2", "ip route show 10.77.0.0/24", "via 10.92.0.1")
    assert "proto bird" in learned


async def _connects(g: Guests, name: str, ip: str, port: int) -> bool:
    got = await g.sh(name, f"timeout 3 bash -c '</dev/tcp/{ip}/{port}'")
    return got.code == 0


@pytest.mark.usefixtures("ovs")
@pytest.mark.timeout(300)
async def test_kvm_router_firewall_lets_one_port_through_and_clearing_restores_traffic(
    guests: Guests, routerfs: Path
) -> None:
    g = guests
    images = router_images(kvm=True)
    br = unique("mbr")
    g.node.state.settings.accel = "tcg"
    # the client's VLAN 2921 and the server's 2922, joined by a KVM router
    await launch(g, routerfs, "c", f"{br},2921", router=False)
    await launch(g, routerfs, "s", f"{br},2922", router=False)
    # 2.8 refuses fw for a container router, and writes no fw lines for one
    assert await g.node.errors("router c fw default drop") == [
        "firewall rules cannot be applied to minirouter containers"
    ]
    await g.ok(
        f"vm config kernel {images}/minirouter.kernel",
        f"vm config initrd {images}/minirouter.initrd",
        "vm config append console=ttyS0 quiet",
        "vm config memory 1024",
        f"vm config net {br},2921,00:1f:53:93:00:01,virtio-net-pci"
        f" {br},2922,00:1f:53:93:00:02,virtio-net-pci",
        "vm launch kvm r",
        "vm start all",
    )
    await g.configure("c", "interface 0 10.93.1.10/24", "gw 10.93.1.1")
    await g.configure("s", "interface 0 10.93.2.10/24", "gw 10.93.2.1")
    await g.configure(
        "r",
        "interface 0 10.93.1.1/24",
        "interface 1 10.93.2.1/24",
        "fw default drop",
        "fw accept out 1 10.93.2.10:8080 tcp",
    )
    for name in ("c", "s"):
        done = await g.applied(name)
        assert done.code == 0, done
    # the TCG boot takes most of the time: the agent answers once the guest is up
    done = await g.applied("r", limit=150)
    assert done.code == 0, done
    assert "fw accept out 1 10.93.2.10:8080 tcp" in (g.files / "minirouter-r").read_text()
    assert "fw " not in (g.files / "minirouter-c").read_text()
    for port in (8080, 9090):
        await g.ok(
            f"cc filter uuid={g.vm('s').uuid}",
            f"cc background python3 -m http.server {port} --bind 10.93.2.10",
            "clear cc filter",
        )
    await g.until("s", "ss -ltn", ":9090")
    # default drop with one accept rule: 8080 passes, 9090 does not
    assert await _connects(g, "c", "10.93.2.10", 8080)
    assert not await _connects(g, "c", "10.93.2.10", 9090)
    rules = await g.must("r", "iptables -S FORWARD")
    assert "-P FORWARD DROP" in rules
    # clearing the firewall and committing again restores the traffic
    await g.ok("clear router r fw", "router r commit")
    done = await g.applied("r")
    assert done.code == 0, done
    assert await _connects(g, "c", "10.93.2.10", 9090)
    assert await _connects(g, "c", "10.93.2.10", 8080)
