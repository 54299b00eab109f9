"""The router daemon's lines and rendered configs, without namespaces or daemons.

Words of a line, the interface index order, dnsmasq.conf and bird.conf as
rendered (each checked by the real program's own syntax check: ``dnsmasq
--test``, ``bird -p``), the iptables-restore input of 2.8's documented
firewall example, and errors that name what is wrong.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from routerlab import require

from megabus.router import bird, dnsmasq, fw, ifaces, lines, programs
from megabus.router.lines import LineError
from megabus.router.options import Options
from megabus.router.router import Router


def test_words_quotes_and_comments() -> None:
    assert lines.split('bird ospf 0 0 "hello" "5"') == ["bird", "ospf", "0", "0", "hello", "5"]
    assert lines.split("  fw  flush ") == ["fw", "flush"]
    assert lines.split("fw accept in 0 '' 1.2.3.4 tcp") == [
        "fw",
        "accept",
        "in",
        "0",
        "",
        "1.2.3.4",
        "tcp",
    ]
    assert lines.split("# a comment") == []
    assert lines.split("   ") == []
    with pytest.raises(LineError, match="unterminated"):
        lines.split('bird ospf 0 0 "hello 5')
    with pytest.raises(LineError, match="longer than"):
        lines.split("x" * 5000)


def test_index_order_is_2_8s_by_the_number_in_the_name(tmp_path: Path) -> None:
    for name in ("lo", "veth10", "veth2", "veth0", "veth1", "gre0x"):
        (tmp_path / "class" / "net" / name).mkdir(parents=True)
    assert ifaces.names(str(tmp_path)) == ["veth0", "veth1", "veth2", "veth10", "gre0x"]
    assert ifaces.resolve(str(tmp_path), 3) == "veth10"
    assert ifaces.resolve(str(tmp_path), None) == "lo"
    with pytest.raises(LineError, match=r"no such network: index 9 \(this router has 5: 0=veth0,"):
        ifaces.resolve(str(tmp_path), 9)


def feed(part: dnsmasq.Dnsmasq | bird.Bird, text: str) -> None:
    for line in text.splitlines():
        part.handle(lines.split(line))


def test_dnsmasq_conf_is_2_8s_template(tmp_path: Path) -> None:
    require("dnsmasq")
    opts = Options(path=str(tmp_path), dnsmasq_leases=str(tmp_path / "leases"))
    d = dnsmasq.Dnsmasq(opts)
    # the router compat script's config, plus upstream, RA and a second address for a host
    feed(
        d,
        "dnsmasq dhcp option dns 1.2.3.4 1.2.3.4\n"
        "dnsmasq dhcp option router 1.2.3.4 1.2.3.254\n"
        "dnsmasq dhcp range 1.2.3.4 1.2.3.5 1.2.3.254\n"
        "dnsmasq dhcp static 1.2.3.4 00:1f:53:02:0b:51 1.2.3.250\n"
        "dnsmasq dhcp static 1.0.0.0 00:1F:53:02:0B:52 1.0.0.3\n"
        "dnsmasq dns 2.2.2.2 bar.com\n"
        "dnsmasq dns 1.1.1.1 foo.com\n"
        "dnsmasq dns 2001:db8::1 foo.com\n"
        "dnsmasq dns 1.1.1.2 foo.com\n"
        "dnsmasq upstream 8.8.8.8\n"
        "dnsmasq ra 2001:1::\n"
        "dnsmasq ra 2001:2::/64\n",
    )
    text = dnsmasq.render(d.pending, opts)
    assert (
        text
        == f"""\
# minirouter dnsmasq config (megabus): written by the router daemon, do not edit

# don't read /etc/resolv.conf
no-resolv
server=8.8.8.8

pid-file={tmp_path}/dnsmasq.pid
dhcp-leasefile={tmp_path}/leases

# dhcp
dhcp-lease-max=4294967295
# 1.0.0.0
dhcp-range=set:1.0.0.0,1.0.0.0,static
dhcp-host=set:1.0.0.0,00:1f:53:02:0b:52,1.0.0.3
# 1.2.3.4
dhcp-range=set:1.2.3.4,1.2.3.5,1.2.3.254
dhcp-host=set:1.2.3.4,00:1f:53:02:0b:51,1.2.3.250
dhcp-option = tag:1.2.3.4, option:router, 1.2.3.254
dhcp-option = tag:1.2.3.4, option:dns-server, 1.2.3.4

# dns
host-record=bar.com,2.2.2.2
host-record=foo.com,1.1.1.1,2001:db8::1
host-record=foo.com,1.1.1.2

# router advertisements
enable-ra
dhcp-range=2001:1::,ra-names
dhcp-range=2001:2::,ra-names,64
"""
    )
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(text)
    check = subprocess.run(
        ["dnsmasq", "--test", "-C", str(conf)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    d.handle(["dnsmasq", "flush"])
    assert "dhcp-range" not in dnsmasq.render(d.pending, opts)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("dnsmasq dhcp static 1.2.3.4 00:11:22:33:44 1.2.3.5", "bad MAC address"),
        ("dnsmasq dhcp range 1.2.3.4 1.2.3.5", "wrong number of words"),
        ("dnsmasq dhcp range 1.2.3.999 1.2.3.5 1.2.3.6", "bad listen address"),
        ("dnsmasq dns 1.1.1.1 foo,bar.com", "bad host name"),
        ("dnsmasq ra 10.0.0.0", "not IPv6"),
        ("dnsmasq upstream example.com", "bad upstream server"),
        ("dnsmasq dhcp option gateway 1.2.3.4 1.2.3.1", "bad DHCP option 'gateway'"),
        ("dnsmasq restart", "unknown dnsmasq command"),
    ],
)
def test_bad_dnsmasq_lines(line: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(LineError, match=error):
        dnsmasq.Dnsmasq(Options(path=str(tmp_path))).handle(lines.split(line))


def test_bird_conf_keeps_2_8s_meaning_in_bird_2(tmp_path: Path) -> None:
    require("bird")
    for name in ("lo", "veth0", "veth1"):
        (tmp_path / "class" / "net" / name).mkdir(parents=True)
    b = bird.Bird(Options(path=str(tmp_path), sysfs=str(tmp_path)))
    feed(
        b,
        "bird static 3.0.0.0/24 2.0.0.2 null\n"
        "bird static 2001:db8:5::/48 2001:db8::2 null\n"
        "bird static 0.0.0.0/0 2.0.0.2 defaultroute\n"
        "bird static 10.0.0.0/24 null foobar\n"
        "bird static 11.0.0.5/24 0 foobar\n"
        "bird static 2001:db8:9::/48 null foobar\n"
        'bird ospf 0 0 "hello" "5"\n'
        'bird ospf 0 0 "cost" "10"\n'
        "bird ospf 0.0.0.1 1\n"
        "bird ospf 0 lo\n"
        "bird ospf 0 filter 10.0.0.0/8\n"
        "bird ospf 0 filter foobar\n"
        "bird bgp p1 local 2.0.0.1 65001\n"
        "bird bgp p1 neighbor 2.0.0.2 65002\n"
        "bird bgp p1 filter all\n"
        "bird bgp p1 filter defaultroute\n"
        "bird bgp refl local 2.0.0.1 65001\n"
        "bird bgp refl neighbor 2.0.0.3 65001\n"
        "bird bgp refl rrclient\n"
        "bird routerid 10.0.0.1\n",
    )
    text = bird.render(b.pending, b.pending.router_id)
    assert "router id 10.0.0.1;" in text
    assert "\tmetric 0;" in text
    assert "protocol static static4 {" in text
    assert "\troute 3.0.0.0/24 via 2.0.0.2;" in text
    assert "protocol static static6 {" in text
    assert "protocol static static_foobar {" in text
    assert "\troute 10.0.0.0/24 unreachable;\n\troute 11.0.0.0/24 unreachable;\n" in text
    assert "protocol static static6_foobar {" in text
    assert '\t\tinterface "veth0" {\n\t\t\thello 5;\n\t\t\tcost 10;\n\t\t};' in text
    assert '\t\tinterface "lo" {' in text
    assert "\tarea 0.0.0.1 {" in text
    assert "\t\tnetworks {\n\t\t\t10.0.0.0/8;\n\t\t};" in text
    assert '\t\t\tif (proto = "static_foobar") then accept;' in text
    assert '\t\t\tif (source = RTS_BGP) || (proto = "static_defaultroute") then accept;' in text
    assert "\trr client;" in text
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    check = subprocess.run(
        ["bird", "-p", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr + text
    # a name BIRD reserves is an error that shows where
    b.handle(lines.split("bird bgp rr neighbor 2.0.0.4 65001"))
    with pytest.raises(
        programs.ProgramError, match=r"syntax error, unexpected RR in 'protocol bgp rr \{'"
    ):
        b.commit()
    # 2.8's "not set yet" router id is ours to choose
    b.handle(lines.split("bird routerid 0.0.0.0"))
    assert b.pending.router_id == ""


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("bird static 10.0.0.0/24 null null", "unnamed static route needs a next hop"),
        ("bird static 10.0.0.0/24 2001::1 null", "is not of 10.0.0.0/24's family"),
        ("bird static 10.0.0.0/33 1.2.3.4 null", "bad network"),
        ("bird static 10.0.0.0/24 1.2.3.4 my-routes", "bad static route name"),
        ("bird ospf x 0", "bad OSPF area"),
        ("bird ospf 0 0 hello", "needs a value"),
        ('bird ospf 0 0 "hello" "5; }"', "bad value"),
        ("bird ospf 0 9", "no such network: index 9"),
        ("bird bgp p1 local 2.0.0.1 0", "bad AS number"),
        ("bird bgp p1 neighbour 2.0.0.1 65000", "unknown bird bgp command"),
        ("bird routerid 10.0.0", "bad router id"),
    ],
)
def test_bad_bird_lines(line: str, error: str, tmp_path: Path) -> None:
    (tmp_path / "class" / "net" / "veth0").mkdir(parents=True)
    with pytest.raises(LineError, match=error):
        bird.Bird(Options(path=str(tmp_path), sysfs=str(tmp_path))).handle(lines.split(line))


def test_firewall_is_2_8s_documented_example(tmp_path: Path) -> None:
    (tmp_path / "class" / "net" / "eth0").mkdir(parents=True)
    f = fw.Firewall(Options(path=str(tmp_path), sysfs=str(tmp_path)))
    f.begin()
    for n, line in enumerate(
        ["fw flush", "fw default drop", "fw accept out 0 192.168.0.5:80 tcp"], start=1
    ):
        f.handle(lines.split(line), n, line)
    assert f.pending is not None
    text, origin = fw.restore_input(f.pending)
    assert text == (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":ESTABLISHED - [0:0]\n"
        "-A ESTABLISHED -p tcp -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A ESTABLISHED -p udp -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A ESTABLISHED -p icmp -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A ESTABLISHED -j RETURN\n-A FORWARD -j ESTABLISHED\n"
        "-A FORWARD -o eth0 -p tcp -d 192.168.0.5 --dport 80 -j ACCEPT\n"
        "COMMIT\n"
    )
    assert origin[11].line == 3


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("fw accept in 0 1.2.3.4:80 ''", "must specify proto when specifying ports"),
        ("fw accept in 0 1.2.3.4:x tcp", "bad destination port"),
        ("fw accept in 0 1.2.3.4:1:2 tcp", "malformed destination"),
        ("fw accept in 0 10.0.0.300 1.2.3.4 tcp", "bad source"),
        ("fw accept in 0 2001::1 tcp", "malformed destination"),
        ("fw accept sideways 0 1.2.3.4 tcp", "bad direction"),
        ("fw default reject", "bad default action"),
        ("fw chain FORWARD default action drop", "bad chain name"),
        ("fw chain web action allow 1.2.3.4 tcp", "bad action"),
        ("fw chain web apply in 5", "no such network: index 5"),
        ("fw accept in 0 1.2.3.4 'tcp -j x'", "bad protocol"),
    ],
)
def test_bad_fw_lines(line: str, error: str, tmp_path: Path) -> None:
    (tmp_path / "class" / "net" / "eth0").mkdir(parents=True)
    f = fw.Firewall(Options(path=str(tmp_path), sysfs=str(tmp_path)))
    with pytest.raises(LineError, match=error):
        f.handle(lines.split(line), 1, line)


def test_a_config_reports_each_bad_line_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "class" / "net" / "eth0").mkdir(parents=True)
    router = Router(Options(path=str(tmp_path), sysfs=str(tmp_path)))
    seen: list[str] = []
    done, failures = router.apply(
        "log level loud\n\n# comment\nip add lo dhcp\nip frob\nroute add default 1.2.3.4\n"
        "\x01\x02 bad\nlog level debug\n",
        report=lambda f: seen.append(str(f)),
    )
    assert done == 6
    assert [str(f) for f in failures] == seen
    assert seen == [
        "line 1: log level loud: bad log level 'loud': want one of debug, info, warn, error, fatal",
        "line 4: ip add lo dhcp: dhcp cannot be used on the loopback interface",
        "line 5: ip frob: unknown ip command: want 'ip add <index|lo> <ip|dhcp>' or 'ip flush'",
        "line 6: route add default 1.2.3.4: wrong number of words (4) for 'route add'",
        "line 7: \\x01\\x02 bad: control characters in a word",
    ]
