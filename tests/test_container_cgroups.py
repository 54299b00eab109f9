"""Container cgroups on both versions, and containers dying with their node.

This host has cgroup v1 controllers and a v2 hierarchy without controllers
at ``/sys/fs/cgroup/unified``; v2's freezer and ``cgroup.kill`` are core
features, so the v2 code runs for real there (its limits need controllers
this host binds to v1, which the test checks are skipped, not faked).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_container_support import alive, exists, minicccfs, read, wait_for

from megabus.bus.connection import Bus
from megabus.config.settings import Settings
from megabus.handlers.node import Node
from megabus.handlers.vms.container_cgroup import Cgroup, detect, node_key

__all__ = ["minicccfs"]

V2_ROOT = "/sys/fs/cgroup/unified"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def test_versions_are_detected() -> None:
    assert detect("/sys/fs/cgroup") == 1  # v1 freezer here
    assert detect(V2_ROOT) == 2
    assert node_key("/tmp/a") != node_key("/tmp/b")
    assert node_key("/tmp/a") == node_key("/tmp/a/")


def test_v2_freeze_thaw_kill_and_remove(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    cg = Cgroup.for_vm(str(tmp_path), 7, root=V2_ROOT)
    assert cg.version == 2
    assert cg.main == f"{V2_ROOT}/megabus/{node_key(str(tmp_path))}/7"
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
    cg = Cgroup.for_vm(str(tmp_path), 3)
    assert cg.version == 1
    cg.create(vcpus=3, memory_mb=100)
    try:
        assert int(read(cg.dirs["cpu"], "cpu.cfs_quota_us")) == 3_000_000
        assert int(read(cg.dirs["memory"], "memory.limit_in_bytes")) == 100 * 1024 * 1024
        assert not cg.frozen()
    finally:
        cg.remove()
    assert not any(exists(p) for p in cg.paths)


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
