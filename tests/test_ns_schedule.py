"""The scheduler: least-loaded placement, schedule/colocate/coschedule, dry-run, mv, status.

Placement is a pure function and is tested as one; the commands run on real
nodes, and ``ns schedule`` launches real QEMU guests on the hosts it chose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from meshnodes import cluster

from megabus.bus.errors import CommandError
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.vm import QueuedVMs, VMType
from megabus.handlers.node.schedule import HostLoad, place


def queued(names: list[str], **cfg: object) -> QueuedVMs:
    return QueuedVMs(names=names, type=VMType.KVM, config=VMConfig(**cfg))  # type: ignore[arg-type]


def where(assignment: dict[str, list[QueuedVMs]]) -> dict[str, str]:
    return {n: host for host, qs in assignment.items() for q in qs for n in q.names}


def test_least_loaded_host_takes_each_vm() -> None:
    hosts = [HostLoad("a", cpus=4, cpucommit=4), HostLoad("b", cpus=4), HostLoad("c", cpus=8)]
    got = where(place([queued(["v0", "v1", "v2", "v3"], vcpus=2)], hosts))
    # b and c start empty (b first by name), c has room for twice b's commit,
    # a is loaded already
    assert got == {"v0": "b", "v1": "c", "v2": "c", "v3": "b"}


def test_memcommit_and_netcommit_rank_differently() -> None:
    hosts = [
        HostLoad("a", memtotal=1000, memcommit=500),
        HostLoad("b", memtotal=4000, memcommit=1000),
    ]
    assert where(place([queued(["v"], memory=100)], hosts, "memcommit")) == {"v": "b"}
    hosts = [HostLoad("a", netcommit=1), HostLoad("b", netcommit=3)]
    assert where(place([queued(["v"])], hosts, "netcommit")) == {"v": "a"}


def test_schedule_colocate_and_coschedule() -> None:
    hosts = [HostLoad("a"), HostLoad("b")]
    got = where(
        place(
            [
                queued(["free0", "free1"]),
                queued(["pinned"], schedule="b"),
                queued(["buddy"], colocate="pinned"),
                queued(["loner"], coschedule=0),
            ],
            hosts,
        )
    )
    assert got["pinned"] == "b"
    assert got["buddy"] == "b"
    # alone on its host: nothing else went where the loner went
    assert [n for n, h in got.items() if h == got["loner"]] == ["loner"]


def test_placement_errors_are_2_8s() -> None:
    with pytest.raises(CommandError, match=r"^no hosts to schedule VMs on$"):
        place([queued(["v"])], [])
    with pytest.raises(CommandError, match=r"^VM scheduled on unknown host: `z`$"):
        place([queued(["v"], schedule="z")], [HostLoad("a"), HostLoad("b")])
    with pytest.raises(CommandError, match=r"^nonexistent colocate VMs: \[ghost\]$"):
        place([queued(["v"], colocate="ghost")], [HostLoad("a"), HostLoad("b")])
    with pytest.raises(CommandError, match=r"^too many VMs scheduled on a for coschedule"):
        place([queued(["v0", "v1"], schedule="a", coschedule=0)], [HostLoad("a"), HostLoad("b")])


async def test_dry_run_dump_mv_then_launch_where_placed(nats_url: str, tmp_path: Path) -> None:
    ns = "namespace exp"
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", f"{ns} ns add-hosts localhost")
        await c.ok("a", f"{ns} ns queueing true")
        assert await c.errors("a", f"{ns} ns schedule dump") == ["must run dry-run first"]
        await c.ok("a", f"{ns} vm config schedule localhost")
        await c.ok("a", f"{ns} vm launch kvm p[0-1]")
        await c.ok("a", f"{ns} clear vm config schedule")
        await c.ok("a", f"{ns} vm launch kvm 2")
        want = [["", "b"], ["", "b"], ["p0", "a"], ["p1", "a"]]
        for line in ("ns schedule dry-run", "ns schedule dump"):
            (plan,) = await c.ok("a", f"{ns} {line}")
            assert plan.header == ["vm", "dst"]
            assert sorted(plan.tabular or []) == want
        await c.ok("a", f"{ns} ns schedule mv p1 b")
        assert await c.errors("a", f"{ns} ns schedule mv p1 zz") == [
            "new dst host is not in namespace"
        ]
        assert await c.errors("a", f"{ns} ns schedule mv nope b") == ["reassign nope: vm not found"]
        await c.ok("a", f"{ns} ns schedule")
        info = await c.responses("a", f"{ns} .columns name vm info")
        placed = sorted((row[0], r.host) for r in info for row in r.tabular or [])
        assert placed == [("p0", "a"), ("p1", "b"), ("vm-0", "b"), ("vm-1", "b")]
        (status,) = await c.ok("a", f"{ns} ns schedule status")
        assert status.header == ["start", "end", "state", "launched", "failures", "total", "hosts"]
        assert [row[2:] for row in status.tabular or []] == [["completed", "4", "0", "4", "2"]]
        # the remote VMs count on their host
        assert await c.text("b", "mesh send b host vms") == "3"


async def test_vm_launch_spreads_a_namespace_over_its_hosts(nats_url: str, tmp_path: Path) -> None:
    ns = "namespace spread"
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", f"{ns} ns add-hosts localhost")
        assert await c.text("a", f"{ns} ns hosts") == "a,b"
        await c.ok("a", f"{ns} vm launch kvm s[0-3]")
        info = await c.responses("a", f"{ns} .columns name,state vm info")
        placed = sorted((row[0], row[1], r.host) for r in info for row in r.tabular or [])
        # least loaded first: the two empty hosts take turns
        assert [p[1] for p in placed] == ["BUILDING"] * 4
        assert sorted(h for _, _, h in placed) == ["a", "a", "b", "b"]
        # and a launch error on one host is reported, the VM still shown in ERROR
        await c.ok("a", f"{ns} vm config qemu /nonexistent/qemu")
        errs = await c.errors("a", f"{ns} vm launch kvm bad")
        assert len(errs) == 1
        assert errs[0].startswith("vm bad: ")
        info = await c.responses("a", f"{ns} .columns state .filter name=bad vm info")
        assert [row for r in info for row in r.tabular or []] == [["ERROR"]]
        await c.ok("a", f"clear namespace {ns.split()[1]}")
