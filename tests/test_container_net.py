"""Container NICs: veth pairs whose host ends join the node's OVS bridges like KVM taps.

Three real containers on one test bridge, one subnet: two on VLAN 101, one
on 102. Each sets its own address from its init; only the two on 101 reach
each other. Addresses are used only inside the containers' namespaces.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from containers import column, exists, read, runtime, vm_named, wait_for
from nodes import MiniNode
from ovsfix import ovs, unique
from procs import run

from megabus.handlers.vms._container_net import NETNS_DIR

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(180)]


async def ping(netns: str, ip: str) -> bool:
    # -c 3: the first frames may go while the userspace datapath learns
    code, _ = await run("ip", "netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-W", "1", ip)
    return code == 0


def vsctl(*args: str) -> str:
    """``ovs-vsctl args`` (raises CalledProcessError when it fails)."""
    return subprocess.run(
        ["ovs-vsctl", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


async def reaches(netns: str, ip: str) -> None:
    for _ in range(10):
        if await ping(netns, ip):
            return
    raise AssertionError(f"{netns} never reached {ip}")


def ovs_get(table: str, record: str, column_: str) -> str:
    return vsctl("get", table, record, column_)


def in_netns(netns: str, *argv: str) -> str:
    """The output of ``argv`` run in the network namespace ``netns``."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True
    ).stdout


async def test_containers_share_bridges_and_vlans_separate_them(
    cnode: MiniNode, minicccfs: Path
) -> None:
    bridge = unique("mbc")
    await cnode.run(f"vm config filesystem {minicccfs}")
    macs = {"a": "00:11:22:33:44:a1", "b": "00:11:22:33:44:b2", "c": "00:11:22:33:44:c3"}
    vlans = {"a": 101, "b": 101, "c": 102}
    for i, name in enumerate(("a", "b", "c")):
        init = f"ifconfig veth0 10.252.0.{i + 1} netmask 255.255.255.0 up; exec sleep 600"
        await cnode.run(f"vm config init /bin/sh -c '{init}'")
        await cnode.run(f"vm config networks {bridge},{vlans[name]},{macs[name]}")
        assert await cnode.errors(f"vm launch container {name}") == []
    assert await cnode.errors("vm start all") == []

    rts = {name: runtime(cnode, name) for name in ("a", "b", "c")}
    taps = {name: rt.taps[0] for name, rt in rts.items()}
    for name, tap in taps.items():
        assert tap.startswith("mega_tap")
        # on the bridge, in its VLAN, as a KVM tap would be
        assert ovs_get("port", tap, "tag") == str(vlans[name])
        assert read(rts[name].path, "taps") == tap
        # the guest end is veth0 with the configured MAC, inside the container only
        inside = in_netns(rts[name].netns, "cat", "/sys/class/net/veth0/address")
        assert inside.strip() == macs[name]
        assert not exists(f"/sys/class/net/{tap}/../veth0")
    info = await column(cnode, "tap")
    assert info == {name: f"[{tap}]" for name, tap in taps.items()}
    assert (await column(cnode, "vlan"))["c"] == "[102]"
    assert sorted(vsctl("list-ports", bridge).split()) == sorted(taps.values())

    await wait_for(
        lambda: all("10.252.0." in read_addr(rt.netns) for rt in rts.values()), "addresses"
    )
    # the ports carry traffic once the datapath has polled the new veths: retry a while
    await reaches(rts["a"].netns, "10.252.0.2")
    await reaches(rts["b"].netns, "10.252.0.1")
    assert not await ping(rts["a"].netns, "10.252.0.3")
    # UDP and TCP too: the userspace datapath drops segments whose checksum was
    # left to an offload that never happens, so containers must not offload it
    assert await udp_and_tcp(rts["b"].netns, rts["a"].netns, "10.252.0.2")

    # kill takes the container's taps off the bridge (2.8: container taps live launch to kill)
    netns_a = rts["a"].netns
    assert await cnode.errors("vm kill a") == []
    assert not exists(f"/sys/class/net/{taps['a']}")
    assert cnode.state.bridges.lookup(bridge) is not None
    with pytest.raises(subprocess.CalledProcessError):
        ovs_get("port", taps["a"], "tag")
    assert not exists(f"{NETNS_DIR}/{netns_a}")
    # a restart makes them again, with the same name and MAC
    assert await cnode.errors("vm start a") == []
    assert rts["a"].taps == [taps["a"]]
    assert ovs_get("port", taps["a"], "tag") == "101"
    assert vm_named(cnode, "a").config.networks[0].mac == macs["a"]

    assert await cnode.errors("clear all") == []
    for tap in taps.values():
        assert not exists(f"/sys/class/net/{tap}")


_ECHO = """
import socket, sys
kind = sys.argv[1]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9911))
    s.settimeout(20)
    data, peer = s.recvfrom(100)
    s.sendto(data.upper(), peer)
else:
    srv = socket.create_server(("0.0.0.0", 9912))
    srv.settimeout(20)
    conn, _ = srv.accept()
    conn.sendall(conn.recv(100).upper())
    conn.close()
"""
_ASK = """
import socket, sys, time
kind, ip = sys.argv[1], sys.argv[2]
for _ in range(40):
    try:
        if kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.5)
            s.sendto(b"hello", (ip, 9911))
            print(s.recv(100).decode())
        else:
            c = socket.create_connection((ip, 9912), timeout=0.5)
            c.sendall(b"hello")
            print(c.recv(100).decode())
        break
    except OSError:
        time.sleep(0.25)
"""


async def udp_and_tcp(server_ns: str, client_ns: str, ip: str) -> bool:
    """Whether a UDP and a TCP echo from ``client_ns`` to ``server_ns`` come back."""
    for kind in ("udp", "tcp"):
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", server_ns, sys.executable, "-c", _ECHO, kind,
        )  # fmt: skip
        try:
            client = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", client_ns, sys.executable, "-c", _ASK, kind, ip,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await client.communicate()
            if out.decode().strip() != "HELLO":
                return False
        finally:
            if server.returncode is None:
                server.kill()
            await server.wait()
    return True


def read_addr(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ip", "-4", "addr", "show", "veth0"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


async def test_a_nic_without_mac_gets_a_random_one(cnode: MiniNode, minicccfs: Path) -> None:
    bridge = unique("mbc")
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run(f"vm config networks {bridge},101 {bridge},102")
    assert await cnode.errors("vm launch container two") == []
    nics = vm_named(cnode, "two").config.networks
    assert [len(n.mac) for n in nics] == [17, 17]
    assert all(n.mac.startswith("00:") for n in nics)
    rt = runtime(cnode, "two")
    assert len(rt.taps) == 2
    listing = in_netns(rt.netns, "ls", "/sys/class/net").split()
    assert sorted(listing) == ["lo", "veth0", "veth1"]
