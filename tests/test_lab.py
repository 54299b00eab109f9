"""Many hosts for real: a 3-host lab (``ops/lab.py``), each host its own namespace, switch and node.

One lab serves the whole module (bringing one up takes seconds); the tests
run in file order and the last one changes the lab (a host leaves, one
joins). Traffic goes between containers on different hosts only, over the
lab's own links: the trunk (``eth1`` on every host), and VXLAN tunnels over
the underlay (``eth0``) that ``ns bridge`` builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ccworld import guest_image
from compat import NODE, diff, run_script, running_node, script_groups
from labfix import LabInfo, lab_client, lab_up
from meshnodes import Cluster
from procs import run

from megabus.bus.connection import Bus
from megabus.bus.messages import Response

pytestmark = pytest.mark.timeout(600)

FS = "/root/uminicccfs"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, minicccfs: Path) -> Iterator[LabInfo]:
    # TCG: this machine's nested KVM cannot boot the guest kernel (machine notes)
    with lab_up(tmp_path_factory.mktemp("lab"), accel="tcg") as info:
        yield info


@pytest.fixture
async def mm(lab: LabInfo) -> AsyncIterator[Cluster]:
    async with lab_client(lab) as c:
        yield c


async def ns_run(c: Cluster, ns: str, line: str, node: str = "mm1") -> list[Response]:
    """Run ``line`` in namespace ``ns`` on ``node``; its responses, none an error."""
    replies = await c.client.command(node, line, namespace=ns, idle_timeout=60.0)
    responses = [r for rep in replies for r in rep.responses]
    assert [r.error for r in responses if r.error] == [], line
    return responses


async def lab_namespace(c: Cluster, ns: str) -> None:
    """``ns`` on mm1 holding the three lab hosts (not a node that just left, as the head)."""
    await ns_run(c, ns, "ns del-hosts all")
    await ns_run(c, ns, "ns add-hosts localhost")
    await ns_run(c, ns, "ns add-hosts mm[2-3]")


async def trunk_everywhere(c: Cluster, ns: str) -> None:
    """``eth1`` on every host's ``mega_bridge`` (bridges outlive namespaces: maybe it is)."""
    line = "ns run bridge trunk mega_bridge eth1"
    replies = await c.client.command("mm1", line, namespace=ns, idle_timeout=60.0)
    errors = {r.error for rep in replies for r in rep.responses if r.error}
    assert errors <= {"bridge already trunking to eth1"}, errors


async def vm_column(c: Cluster, ns: str, col: str) -> dict[str, tuple[str, str]]:
    """VM name -> (host, ``col``) over the namespace."""
    out: dict[str, tuple[str, str]] = {}
    for r in await ns_run(c, ns, f".columns name,{col} vm info"):
        for name, value in r.tabular or []:
            out[name] = (r.host, value)
    return out


async def netns_exec(pid: str, *argv: str) -> tuple[int, str]:
    """Run a host program in the network namespace of container ``pid``."""
    return await run("nsenter", "-t", pid, "-n", *argv)


async def set_ip(pid: str, cidr: str) -> None:
    """Give the container's ``veth0`` ``cidr``, again if its init's DHCP client flushes it."""
    async with asyncio.timeout(60):
        seen = 0
        while seen < 3:  # present three looks in a row: the client's deconfig has passed
            _, out = await netns_exec(pid, "ip", "-4", "-o", "addr", "show", "dev", "veth0")
            if cidr in out:
                seen += 1
            else:
                seen = 0
                code, out = await netns_exec(pid, "ip", "addr", "add", cidr, "dev", "veth0")
                assert code == 0 or "File exists" in out, out
            await asyncio.sleep(0.5)


async def pings(pid: str, ip: str) -> bool:
    code, _ = await netns_exec(pid, "ping", "-c", "2", "-w", "10", "-W", "2", ip)
    return code == 0


# -- minimega 2.8's distributed scripts ---------------------------------------------------


def _multihost() -> list[str]:
    from compat import COMPAT_DIR

    readme = COMPAT_DIR / "distributed" / "README.md"
    return script_groups(readme).get("multihost", []) if readme.exists() else []


@pytest.fixture
async def head(lab: LabInfo, compat_dir: Path, tmp_path: Path) -> AsyncIterator[Bus]:
    """The node the scripts go to: in the mesh with mm1..mm3, on no lab host (as 2.8's runner)."""
    async with running_node(lab.urls[0], name=NODE, base=tmp_path / "head", heartbeat=1.0):
        bus = await Bus.connect(lab.urls, name="minitest")
        try:
            async with asyncio.timeout(30):
                while True:
                    replies = await bus.command(NODE, "mesh list all")
                    if set(replies[0].responses[0].data or []) >= set(lab.hosts):
                        break
                    await asyncio.sleep(0.2)
            yield bus
        finally:
            await bus.close()


@pytest.mark.parametrize("name", _multihost() or ["no-scripts"])
async def test_distributed_script_matches_want(head: Bus, compat_dir: Path, name: str) -> None:
    folder = compat_dir / "distributed"
    got = await run_script(head, name, folder)
    want = (folder / f"{name}.want").read_text()
    assert got == want, f"{name}: got != want\n{diff(name, got, want)}"


# -- VLANs across hosts ---------------------------------------------------------------------


async def test_vlans_reach_across_hosts_over_the_trunk_and_vxlan_and_stay_apart(
    mm: Cluster,
) -> None:
    ns = "net"
    await lab_namespace(mm, ns)
    await trunk_everywhere(mm, ns)
    await ns_run(mm, ns, "ns bridge tun vxlan")
    await ns_run(mm, ns, f"vm config filesystem {FS}")
    for net, host, name in (
        ("10", "mm1", "a1"), ("10", "mm2", "a2"), ("20", "mm3", "b3"),  # over the trunk
        ("tun,30", "mm2", "x2"), ("tun,30", "mm3", "x3"),  # over VXLAN
    ):  # fmt: skip
        await ns_run(mm, ns, f"vm config net {net}")
        await ns_run(mm, ns, f"vm config schedule {host}")
        await ns_run(mm, ns, f"vm launch container {name}")
    await ns_run(mm, ns, "vm start all")
    pids = await vm_column(mm, ns, "pid")
    assert {n: h for n, (h, _) in pids.items()} == {
        "a1": "mm1", "a2": "mm2", "b3": "mm3", "x2": "mm2", "x3": "mm3",
    }  # fmt: skip
    # one subnet for all: only the VLAN keeps b3 away from a1 and a2
    for i, name in enumerate(("a1", "a2", "b3", "x2", "x3"), start=1):
        await set_ip(pids[name][1], f"10.9.0.{i}/24")
    a1, x2 = pids["a1"][1], pids["x2"][1]
    assert await pings(a1, "10.9.0.2"), "a1 (mm1) cannot reach a2 (mm2) in VLAN 10 over the trunk"
    assert await pings(x2, "10.9.0.5"), "x2 (mm2) cannot reach x3 (mm3) over VXLAN"
    # a host tap with an address on a third host joins VLAN 10 too
    tap = await ns_run(mm, ns, "tap create 10 ip 10.9.0.9/24", node="mm3")
    assert tap[0].response.startswith("mega_tap"), tap
    assert await pings(a1, "10.9.0.9"), "a1 (mm1) cannot reach mm3's host tap in VLAN 10"
    assert not await pings(a1, "10.9.0.3"), "VLAN 10 reached b3 in VLAN 20"
    assert not await pings(a1, "10.9.0.5"), "mega_bridge VLAN 10 reached the tunnel bridge"
    rows = await ns_run(mm, ns, ".columns bridge,tunnels bridge")
    tunnels = {row[0]: row[1] for r in rows for row in r.tabular or []}
    assert tunnels["mega_bridge"] == "[]"
    assert len(tunnels["tun"].strip("[]").split()) == 2, "tun is no full mesh of 3 hosts"
    await ns_run(mm, "", f"clear namespace {ns}")
    # clear namespace took the tunnel bridge down on every host
    for r in await ns_run(mm, "", "mesh send all .columns bridge bridge"):
        assert ["tun"] not in (r.tabular or []), r


# -- one cluster ----------------------------------------------------------------------------


async def test_thirty_containers_spread_over_the_hosts_and_all_answer_cc(mm: Cluster) -> None:
    ns = "many"
    await lab_namespace(mm, ns)
    await ns_run(mm, ns, f"vm config filesystem {FS}")
    await ns_run(mm, ns, "vm launch container h[1-30]")
    await ns_run(mm, ns, "vm start all")
    where = await vm_column(mm, ns, "state")
    assert len(where) == 30
    assert {h for h, _ in where.values()} == {"mm1", "mm2", "mm3"}
    assert {s for _, s in where.values()} == {"RUNNING"}
    async with asyncio.timeout(120):
        # every agent has dialled in (30 inits on a busy machine take a while)
        while {a for _, a in (await vm_column(mm, ns, "cc_active")).values()} != {"true"}:  # noqa: ASYNC110
            await asyncio.sleep(1)
    await ns_run(mm, ns, "cc exec hostname")
    answered: set[str] = set()
    text = ""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(120):
            while len(answered) < 30:
                await asyncio.sleep(1)
                text = "\n".join(r.response for r in await ns_run(mm, ns, "cc response all"))
                answered = set(re.findall(r"^(h\d+)$", text, re.M))
    assert answered == {f"h{i}" for i in range(1, 31)}, text
    await ns_run(mm, "", f"clear namespace {ns}")


async def test_a_kvm_guest_and_a_container_on_different_hosts_talk(mm: Cluster) -> None:
    kernel, initrd = guest_image()
    ns = "mixed"
    await lab_namespace(mm, ns)
    await trunk_everywhere(mm, ns)
    for line in (
        f"vm config kernel {kernel}", f"vm config initrd {initrd}",
        "vm config append console=ttyS0 quiet", "vm config memory 512",
        "vm config net 40,virtio-net-pci", "vm config schedule mm1", "vm launch kvm g1",
        "clear vm config", f"vm config filesystem {FS}", "vm config net 40",
        "vm config schedule mm2", "vm launch container c2", "vm start all",
    ):  # fmt: skip
        await ns_run(mm, ns, line)
    async with asyncio.timeout(180):
        # the guest boots under TCG, then its agent dials in
        while {a for _, a in (await vm_column(mm, ns, "cc_active")).values()} != {"true"}:  # noqa: ASYNC110
            await asyncio.sleep(1)
    await ns_run(mm, ns, "cc filter name=g1")
    await ns_run(mm, ns, "cc exec ip addr add 10.9.4.1/24 dev eth0")
    await ns_run(mm, ns, "clear cc filter")
    c2 = (await vm_column(mm, ns, "pid"))["c2"][1]
    await set_ip(c2, "10.9.4.2/24")
    reached = False
    for _ in range(6):  # until the guest's agent has run the command
        reached = await pings(c2, "10.9.4.1")
        if reached:
            break
    assert reached, "the container on mm2 cannot reach the KVM guest on mm1 in VLAN 40"
    await ns_run(mm, "", f"clear namespace {ns}")


async def test_losing_a_hub_loses_no_vlan_alias_and_no_command(lab: LabInfo, mm: Cluster) -> None:
    ns = "hubs"
    await lab_namespace(mm, ns)
    await ns_run(mm, ns, "vm config net LAN")
    before = await mm.text("mm2", f"namespace {ns} vlans")
    assert "LAN" in before, before
    lab.lab("kill-hub", "1")
    async with asyncio.timeout(60):
        # nodes and the client on hub 1 reconnect to another hub; until then a command may fail
        while True:
            try:
                after = await mm.text("mm3", f"namespace {ns} vlans")
            except Exception:
                await asyncio.sleep(1)
                continue
            if after == before:
                break
            await asyncio.sleep(1)
    await ns_run(mm, ns, "vm config net LAN2")
    # the bucket holds the truth; the other hosts' views follow its updates, and a
    # watcher that reconnected through another hub may take a moment to catch up
    async with asyncio.timeout(30):
        while True:
            seen = await mm.text("mm2", f"namespace {ns} vlans")
            if "LAN2" in seen:
                break
            await asyncio.sleep(0.5)
    assert "LAN" in [line.split()[0] for line in seen.splitlines()[1:] if line.strip()], seen
    await ns_run(mm, "", f"clear namespace {ns}")


async def test_a_host_that_leaves_is_reported_and_one_that_joins_takes_vms(
    lab: LabInfo, mm: Cluster
) -> None:
    ns = "churn"
    await lab_namespace(mm, ns)
    await ns_run(mm, ns, f"vm config filesystem {FS}")
    for i in (1, 2, 3):
        await ns_run(mm, ns, f"vm config schedule mm{i}")
        await ns_run(mm, ns, f"vm launch container c{i}")
    gone = "mm3"
    lab.lab("kill", gone)
    # vm info answers for the hosts that remain and names the one that left (at once
    # "no such node", once its heartbeats are missed "not responding")
    async with asyncio.timeout(60):
        replies = await mm.client.command("mm1", "vm info", namespace=ns, idle_timeout=60)
    responses = [r for rep in replies for r in rep.responses]
    errors = [r.error for r in responses if r.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{gone}: "), errors
    assert errors[0].endswith("; its VMs are lost: c3"), errors
    names = {row[r.header.index("name")] for r in responses if r.header for row in r.tabular or []}
    assert names == {"c1", "c2"}
    # the others keep answering
    others = sorted(set(lab.hosts) - {gone})
    for host in others:
        assert await mm.errors(host, "host name") == []
    joined = lab.lab("add").strip()
    lab.refresh()
    await ns_run(mm, ns, f"ns del-hosts {gone}")
    await ns_run(mm, ns, f"ns add-hosts {joined}")
    await ns_run(mm, ns, f"vm config schedule {joined}")
    await ns_run(mm, ns, "vm launch container j1")
    await ns_run(mm, ns, "vm start j1")
    states = await vm_column(mm, ns, "state")
    assert states["j1"] == (joined, "RUNNING")
