"""``dnsmasq`` on a real node: real dnsmasq, real Open vSwitch, guests in network namespaces.

The node's dnsmasq listens on a host tap of a test bridge; guests on the
same VLAN ask it for leases (busybox ``udhcpc``) and names. The leak test
runs the node in a mount namespace of its own whose ``/etc/resolv.conf``
names a test "host resolver" inside a guest: queries for unknown names must
never reach it, and must reach the upstream set with ``dns upstream server``
without restarting dnsmasq. A control dnsmasq without the fix shows that
the same set-up does catch a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dnslab import HERE, PYTHON, Lab, ask, resolver, udhcpc
from nodes import MiniNode, node_at
from ovsfix import ovs, unique

from megabus.bus.connection import Bus
from megabus.bus.errors import BusError
from megabus.bus.server import EmbeddedServer
from megabus.handlers.net._bridges import Bridges

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]


@pytest.fixture
async def dnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "dq", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


def rows(text: str) -> list[list[str]]:
    """The rows of a rendered table (header dropped)."""
    return [[c.strip() for c in ln.split("|")] for ln in text.splitlines()[1:]]


def gone(path: str | Path) -> bool:
    return not Path(path).exists()


def program(pid: str) -> str:
    """The program a process runs (``argv[0]``)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def lease_script(tmp_path: Path) -> tuple[Path, Path]:
    """A udhcpc script that saves the environment of its ``bound`` call."""
    out = tmp_path / "bound.json"
    script = tmp_path / "udhcpc.py"
    script.write_text(
        f"#!{PYTHON}\nimport json, os, sys\n"
        f"if sys.argv[1] == 'bound':\n"
        f"    open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    script.chmod(0o755)
    return script, out


async def test_dhcp_range_static_leases_options_and_kill(dnode: MiniNode, tmp_path: Path) -> None:
    br = unique("mdb")
    lab = Lab(dnode.state.bridges, br)
    try:
        assert await dnode.errors(f"tap create 101 bridge {br} ip 10.231.0.1/24") == []
        assert await dnode.errors("dnsmasq start 10.231.0.1 10.231.0.100 10.231.0.150") == []
        [row] = rows(await dnode.text("dnsmasq"))
        sid, addr, low, high, path, pid = row
        assert (sid, addr, low, high) == ("0", "10.231.0.1", "10.231.0.100", "10.231.0.150")
        home = Path(path)
        assert home.parent == tmp_path / "base"
        assert home.name.startswith("dnsmasq_")
        for sub in ("hostdir", "dhcpdir", "dhcpoptsdir"):
            assert (home / sub).is_dir()
        assert not (home / "resolv.conf").exists()  # the leak fix: no upstream at first
        assert int(pid) > 0
        assert program(pid).endswith("dnsmasq")

        # a lease from the range
        script, bound = lease_script(tmp_path)
        g1 = await lab.guest(101)
        got = await udhcpc(g1, script)
        assert 100 <= int(got.rsplit(".", 1)[1]) <= 150
        assert g1.mac in (home / "dnsmasq.leases").read_text()

        # a static lease, picked up from dhcpdir without a restart
        g2 = await lab.guest(101)
        assert await dnode.errors(f"dnsmasq configure 0 ip {g2.mac} 10.231.0.77") == []
        assert (home / "dhcpdir" / "dhcp").read_text() == f"{g2.mac},10.231.0.77\n"
        assert rows(await dnode.text("dnsmasq configure 0 ip")) == [["0", g2.mac, "10.231.0.77"]]
        assert await udhcpc(g2, script) == "10.231.0.77"

        # a DHCP option reaches the client
        option = "option:dns-server,10.231.0.99"
        assert await dnode.errors(f"dnsmasq configure 0 options {option}") == []
        assert (home / "dhcpoptsdir" / "dhcp-options").read_text() == option + "\n"
        assert rows(await dnode.text("dnsmasq configure all options")) == [["0", option]]
        bound.unlink(missing_ok=True)
        g3 = await lab.guest(101)
        await udhcpc(g3, script)
        assert json.loads(bound.read_text())["dns"].split() == ["10.231.0.99"]
        assert rows(await dnode.text("dnsmasq")) == [row]  # the same process throughout

        # bad input
        assert await dnode.errors("dnsmasq configure 7 ip") == ["invalid dnsmasq ID"]
        assert await dnode.errors("dnsmasq configure x dns") == ["invalid dnsmasq ID"]
        assert await dnode.errors("dnsmasq kill 7") == ["invalid id"]
        assert await dnode.errors("dnsmasq kill x") == ['strconv.Atoi: parsing "x": invalid syntax']
        bad = await dnode.errors("dnsmasq start 10.231.0.1 nonsense 10.231.0.150")
        assert len(bad) == 1
        assert bad[0].startswith("dnsmasq exited: ")
        assert [r[0] for r in rows(await dnode.text("dnsmasq"))] == ["0"]

        # kill: the process and its directory go
        assert await dnode.errors("dnsmasq kill 0") == []
        assert rows(await dnode.text("dnsmasq")) == []
        assert gone(home)
        assert gone(f"/proc/{pid}")
        # IDs are not reused, and clear all kills what runs
        assert await dnode.errors("dnsmasq start 10.231.0.1 10.231.0.100 10.231.0.150") == []
        [again] = rows(await dnode.text("dnsmasq"))
        assert again[0] == "2"  # 1 went to the failed start: 2.8 numbers processes started
        await dnode.run("clear all")
        assert rows(await dnode.text("dnsmasq")) == []
        assert gone(f"/proc/{again[5]}")
    finally:
        await lab.close()


# -- the DNS-leak fix, with a node whose /etc/resolv.conf is the test's ------------------------


@contextlib.asynccontextmanager
async def mount_ns_node(bus: Bus, url: str, resolv: Path, base: Path) -> AsyncIterator[str]:
    """A node process in a private mount namespace with ``resolv`` as its resolv.conf."""
    name = unique("dqn")
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--mount", "--propagation", "private", "--",
        PYTHON, str(HERE), "node", str(resolv), url, name, str(base),
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while True:
                assert proc.returncode is None, "the node process exited"
                with contextlib.suppress(BusError):
                    replies = await bus.command(name, "echo up", idle_timeout=2)
                    if "up" in replies[-1].rendered:
                        break
                await asyncio.sleep(0.2)
        yield name
    finally:
        with contextlib.suppress(BusError):
            await bus.command(name, "clear all", idle_timeout=60)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def cmd(bus: Bus, node: str, line: str) -> str:
    """Run ``line`` on ``node``; its rendered text (an error fails the test)."""
    replies = await bus.command(node, line, idle_timeout=60)
    errors = [r.error for rep in replies for r in rep.responses if r.error]
    assert errors == [], f"{line}: {errors}"
    return "\n".join(rep.rendered for rep in replies if rep.rendered)


async def test_unknown_names_never_reach_the_host_resolver_until_an_upstream_is_set(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    br = unique("mdl")
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 10.231.1.53\n")
    lab = Lab(Bridges(), br)
    try:
        async with mount_ns_node(bus, nats_url, resolv, tmp_path / "base") as node:
            # the node sees the test's resolver as the host's
            await cmd(bus, node, ".annotate false")
            assert "10.231.1.53" in await cmd(bus, node, "shell cat /etc/resolv.conf")
            await cmd(bus, node, f"tap create 101 bridge {br} ip 10.231.1.1/24")
            client = await lab.guest(101, "10.231.1.10")
            host_guest = await lab.guest(101, "10.231.1.53")
            up_guest = await lab.guest(101, "10.231.1.54")
            async with (
                resolver(host_guest, tmp_path / "host.log", "leak.test=10.9.9.9") as host_res,
                resolver(up_guest, tmp_path / "up.log", "far.test=10.231.1.200") as upstream,
            ):
                # control: a dnsmasq without the fix forwards to the host resolver
                pidfile = tmp_path / "control.pid"
                await cmd(
                    bus, node,
                    f"shell dnsmasq --port=5353 --listen-address=10.231.1.1 --bind-interfaces "
                    f"--except-interface=lo --conf-file=/dev/null --pid-file={pidfile}",
                )  # fmt: skip
                try:
                    assert await ask(client, "10.231.1.1", "control.test", 5353) == (3, [])
                    assert host_res.names() == ["control.test"]
                finally:
                    os.kill(int(pidfile.read_text()), signal.SIGTERM)

                await cmd(bus, node, "dnsmasq start 10.231.1.1 10.231.1.100 10.231.1.150")
                [[sid, *_, path, pid]] = rows(await cmd(bus, node, "dnsmasq"))
                home = Path(path)

                # names dnsmasq knows: its own entries
                await cmd(bus, node, f"dnsmasq configure {sid} dns 10.231.1.80 web.test")
                assert (home / "hostdir" / "hosts").read_text() == "10.231.1.80\tweb.test\n"
                assert await ask(client, "10.231.1.1", "web.test") == (0, ["10.231.1.80"])
                listed = rows(await cmd(bus, node, f"dnsmasq configure {sid} dns"))
                assert listed == [[sid, "10.231.1.80", "web.test"]]

                # a name it does not know goes nowhere
                code, addrs = await ask(client, "10.231.1.1", "leak.test")
                assert code == 5
                assert addrs == []
                assert host_res.names() == ["control.test"]
                assert upstream.names() == []

                # an upstream: used at once, by the same dnsmasq process
                await cmd(bus, node, f"dnsmasq configure {sid} dns upstream server 10.231.1.54")
                assert (home / "resolv.conf").read_text() == "nameserver 10.231.1.54\n"
                assert await ask(client, "10.231.1.1", "far.test") == (0, ["10.231.1.200"])
                assert "far.test" in upstream.names()
                assert host_res.names() == ["control.test"]
                listed = rows(await cmd(bus, node, f"dnsmasq configure {sid} dns upstream"))
                assert listed == [[sid, "10.231.1.54"]]
                [[_, *_, pid_after]] = rows(await cmd(bus, node, "dnsmasq"))
                assert pid_after == pid
    finally:
        await lab.net.destroy_all()
        await lab.close()
