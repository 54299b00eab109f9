"""Container cgroups on the version this host runs, and containers dying with their node.

The node keeps a container in cgroup v1 when a freezer hierarchy is mounted
under ``/sys/fs/cgroup`` (our hosts), else in the unified v2 hierarchy
(``/sys/fs/cgroup`` itself on a stock Debian 12). The tests read the mount
table to know which this host runs, and check:

* the limits where this host keeps them: v1's ``cpu.cfs_quota_us`` and
  ``memory.limit_in_bytes`` in the controller hierarchies, v2's ``cpu.max``
  and ``memory.max`` in the unified one; for a bare cgroup, and for a real
  container found through its ``/proc/<pid>/cgroup``;
* v2's freeze, thaw and ``cgroup.kill`` wherever a v2 hierarchy is mounted (a
  v1 host may have one without controllers, at ``/sys/fs/cgroup/unified``),
  and that without the cpu and memory controllers the limits are left out
  with a warning.

A test for a case this host does not have skips, saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containers import alive, exists, read, vm_named, wait_for
from nodes import MiniNode

from megabus.bus.connection import Bus
from megabus.config.settings import Settings
from megabus.handlers.main import Node
from megabus.handlers.vms._container_cgroup import ROOT, Cgroup, CgroupError, detect, node_key

MIB = 1024 * 1024


def cgroup_mounts() -> list[tuple[str, str, set[str]]]:
    """``(mount point, type, options)`` of the cgroup (v1) and cgroup2 mounts."""
    out = []
    for line in read("/proc/self/mounts").splitlines():
        _, point, kind, options, *_ = line.split()
        if kind in ("cgroup", "cgroup2"):
            out.append((point, kind, set(options.split(","))))
    return out


def host_version() -> int | None:
    """Which cgroups this host runs, by its mount table (None: neither the node can use)."""
    freezer = os.path.realpath(os.path.join(ROOT, "freezer"))
    mounts = cgroup_mounts()
    if any(kind == "cgroup" and point == freezer and "freezer" in o for point, kind, o in mounts):
        return 1
    if any(kind == "cgroup2" and point == ROOT for point, kind, _ in mounts):
        return 2
    return None


def v2_root() -> str | None:
    """The unified hierarchy: ``ROOT`` on a v2 host, else wherever one is mounted."""
    points = [point for point, kind, _ in cgroup_mounts() if kind == "cgroup2"]
    return ROOT if ROOT in points else next(iter(points), None)


def controllers(root: str) -> set[str]:
    """The controllers a v2 hierarchy offers."""
    return set(read(root, "cgroup.controllers").split())


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def test_detect_reads_the_layout(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    (v1 / "freezer").mkdir(parents=True)
    (v1 / "freezer" / "cgroup.procs").touch()
    v2.mkdir()
    (v2 / "cgroup.controllers").touch()
    assert detect(str(v1)) == 1
    assert detect(str(v2)) == 2
    with pytest.raises(CgroupError, match="no freezer cgroup"):
        detect(str(tmp_path))
    assert node_key("/tmp/a") != node_key("/tmp/b")
    assert node_key("/tmp/a") == node_key("/tmp/a/")


def test_detect_agrees_with_the_mount_table() -> None:
    version = host_version()
    if version is None:
        with pytest.raises(CgroupError):
            detect()
    else:
        assert detect() == version


def test_v2_freeze_thaw_kill_and_remove(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    root = v2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    cg = Cgroup.for_vm(str(tmp_path), 7, root=root)
    assert cg.version == 2
    assert cg.main == f"{root}/megabus/{node_key(str(tmp_path))}/7"
    cg.create(vcpus=1, memory_mb=64)
    try:
        Path(cg.main, "cgroup.procs").write_text(str(sleeper.pid))
        assert cg.pids() == [sleeper.pid]
        cg.freeze()
        deadline = 200
        while not cg.frozen() and deadline:
            deadline -= 1
            time.sleep(0.05)
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()
        cg.kill_all()
        assert sleeper.wait(timeout=30) == -9
        assert cg.pids() == []
    finally:
        cg.kill_all()
        cg.remove()
    assert not exists(cg.main)
    # the node's folder goes with its last cgroup
    assert not exists(str(Path(cg.main).parent))


def test_v1_limits_and_removal(tmp_path: Path) -> None:
    if host_version() != 1:
        pytest.skip("this host keeps containers in cgroup v2: the v2 test runs instead")
    cg = Cgroup.for_vm(str(tmp_path), 3)
    assert cg.version == 1
    key = node_key(str(tmp_path))
    assert cg.dirs == {
        c: f"{ROOT}/{c}/megabus/{key}/3" for c in ("freezer", "memory", "devices", "cpu")
    }
    cg.create(vcpus=3, memory_mb=100)
    try:
        assert int(read(cg.dirs["cpu"], "cpu.cfs_period_us")) == 1_000_000
        assert int(read(cg.dirs["cpu"], "cpu.cfs_quota_us")) == 3_000_000
        assert int(read(cg.dirs["memory"], "memory.limit_in_bytes")) == 100 * MIB
        assert "c 1:3 rwm" in read(cg.dirs["devices"], "devices.list").splitlines()
        assert not cg.frozen()
    finally:
        cg.remove()
    assert not any(exists(p) for p in cg.paths)


def test_v2_limits_and_removal(tmp_path: Path) -> None:
    if host_version() != 2:
        pytest.skip("this host keeps containers in cgroup v1: the v1 test runs instead")
    if not {"cpu", "memory"} <= controllers(ROOT):
        pytest.skip(f"{ROOT} offers no cpu and memory controllers: the warning test runs instead")
    cg = Cgroup.for_vm(str(tmp_path), 3)
    assert cg.version == 2
    assert cg.main == f"{ROOT}/megabus/{node_key(str(tmp_path))}/3"
    cg.create(vcpus=3, memory_mb=100)
    try:
        assert read(cg.main, "cpu.max").split() == ["300000", "100000"]
        assert int(read(cg.main, "memory.max")) == 100 * MIB
        assert not cg.frozen()
    finally:
        cg.remove()
    assert not exists(cg.main)


def test_v2_without_controllers_leaves_the_limits_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = v2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    if {"cpu", "memory"} <= controllers(root):
        pytest.skip(f"{root} offers the cpu and memory controllers: the limits test runs instead")
    cg = Cgroup.for_vm(str(tmp_path), 4, root=root)
    with caplog.at_level(logging.WARNING, logger="megabus.handlers.vms._container_cgroup"):
        cg.create(vcpus=2, memory_mb=64)
    try:
        assert "cgroup v2: no cpu controller; vcpus limit not applied" in caplog.messages
        assert "cgroup v2: no memory controller; memory limit not applied" in caplog.messages
        assert not exists(os.path.join(cg.main, "cpu.max"))
        assert not exists(os.path.join(cg.main, "memory.max"))
    finally:
        cg.remove()
    assert not exists(cg.main)


async def test_a_containers_limits_are_in_its_cgroups(cnode: MiniNode, minicccfs: Path) -> None:
    for line in (
        f"vm config filesystem {minicccfs}",
        "vm config vcpus 2",
        "vm config memory 128",
        "vm launch container c0",
    ):
        assert await cnode.errors(line) == [], line
    vm = vm_named(cnode, "c0")
    assert vm.pid > 0
    path = f"/megabus/{node_key(cnode.state.settings.base)}/{vm.id}"
    # /proc/<pid>/cgroup: "<id>:<controllers>:<path>" (v2: "0::<path>")
    member = {}
    for line in read(f"/proc/{vm.pid}/cgroup").splitlines():
        _, names, where = line.split(":", 2)
        for name in names.split(","):
            member[name] = where
    version = detect()
    if version == 1:
        assert member["freezer"] == member["memory"] == member["cpu"] == member["devices"] == path
        assert int(read(f"{ROOT}/cpu{path}", "cpu.cfs_quota_us")) == 2_000_000
        assert int(read(f"{ROOT}/memory{path}", "memory.limit_in_bytes")) == 128 * MIB
    else:
        assert member[""] == path
        if not {"cpu", "memory"} <= controllers(ROOT):
            pytest.skip(f"{ROOT} offers no cpu and memory controllers to hold the limits")
        assert read(f"{ROOT}{path}", "cpu.max").split() == ["200000", "100000"]
        assert int(read(f"{ROOT}{path}", "memory.max")) == 128 * MIB


async def test_a_stopped_node_kills_its_containers_and_unmounts(
    nats_url: str, tmp_path: Path, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    node = Node(Settings(name="n1", nats=[nats_url], base=str(base)))
    await node.start()
    try:
        client = await Bus.connect([nats_url], name="client")
        try:
            for line in (f"vm config filesystem {minicccfs}", "vm launch container c[0-1]"):
                replies = await client.command("n1", line)
                assert [r.error for rep in replies for r in rep.responses if r.error] == []
            replies = await client.command("n1", ".columns pid,id .annotate false vm info")
            rows = replies[-1].responses[0].tabular or []
        finally:
            await client.close()
        pids = [int(row[0]) for row in rows]
        upper = [str(base / row[1] / "fs") for row in rows]
        assert len(pids) == 2
        assert all(alive(p) for p in pids)
        assert all(mounted(u) for u in upper)
    finally:
        await node.stop()
    await wait_for(lambda: not any(alive(p) for p in pids), "containers to die")
    assert not any(mounted(u) for u in upper)


def mounted(path: str) -> bool:
    return any(line.split()[1] == path for line in read("/proc/mounts").splitlines())
