"""KVM VMs on a real node: real QEMU (diskless guests), real QMP, the real dispatcher.

The guests have no disk, so they boot to "no bootable device", which is all a
lifecycle needs; the node's accelerator setting stays ``auto`` (KVM here).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at, transcript

from megabus.bus.server import EmbeddedServer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def vmnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "vm", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


async def column(node: MiniNode, col: str) -> dict[str, str]:
    out = await node.text(f".columns name,{col} vm info")
    return {k.strip(): v.strip() for k, v in (line.split("|") for line in out.splitlines()[1:])}


async def test_ten_guests_launch_start_stop_kill_flush(vmnode: MiniNode) -> None:
    assert await vmnode.errors("vm launch kvm foo[0-9]") == []
    st = await column(vmnode, "state")
    assert st == {f"foo{i}": "BUILDING" for i in range(10)}
    pids = {k: int(v) for k, v in (await column(vmnode, "pid")).items()}
    assert all(alive(p) for p in pids.values())

    assert await vmnode.errors("vm start all") == []
    assert set((await column(vmnode, "state")).values()) == {"RUNNING"}
    status = await vmnode.text("""vm qmp foo3 '{ "execute": "query-status" }'""")
    assert '"status":"running"' in status

    assert await vmnode.errors("vm stop all") == []
    assert set((await column(vmnode, "state")).values()) == {"PAUSED"}

    assert await vmnode.errors("vm kill all") == []
    assert set((await column(vmnode, "state")).values()) == {"QUIT"}
    assert not any(alive(p) for p in pids.values())

    assert await vmnode.errors("vm flush") == []
    assert await vmnode.text("vm info") == ""
    left = os.listdir(vmnode.state.settings.base)
    assert not any(name.isdigit() for name in left)


async def test_lifecycle_and_bad_names_match_28(vmnode: MiniNode, compat_dir: Path) -> None:
    for name in ("vm_lifecycle", "vm_bad_names", "vm_qmp"):
        script = (compat_dir / name).read_text().rstrip("\n")
        assert await transcript(vmnode, script) == (compat_dir / f"{name}.want").read_text()
        await vmnode.run("clear all")


async def test_instance_files_follow_28(vmnode: MiniNode) -> None:
    await vmnode.run("vm config memory 128")
    await vmnode.run("vm launch kvm bar")
    vm = next(iter(vmnode.state.vms.vms.values()))
    inst = Path(vmnode.state.settings.base) / str(vm.id)
    assert (inst / "name").read_text() == "bar"
    assert "vm config memory 128\n" in (inst / "config").read_text()
    assert (inst / "qemu.pid").read_text().strip() == str(vm.pid)
    link = Path(vmnode.state.settings.base) / "namespaces" / "minimega" / vm.uuid
    assert link.resolve() == inst
    await vmnode.run("vm start bar")
    assert (inst / "state").read_text() == "RUNNING"


async def test_launch_errors_are_reported_and_the_vm_shows_error(vmnode: MiniNode) -> None:
    await vmnode.run("vm config qemu /nonexistent/qemu")
    errors = await vmnode.errors("vm launch kvm broken")
    assert len(errors) == 1
    assert "/nonexistent/qemu" in errors[0]
    assert await column(vmnode, "state") == {"broken": "ERROR"}
    tags = await column(vmnode, "tags")
    assert "/nonexistent/qemu" in tags["broken"]
    # ERROR VMs are flushable
    await vmnode.run("vm flush")
    assert await vmnode.text("vm info") == ""


async def test_name_rules_and_targets(vmnode: MiniNode) -> None:
    assert await vmnode.errors("vm launch kvm 2") == []
    assert set(await column(vmnode, "state")) == {"vm-0", "vm-1"}
    assert await vmnode.errors("vm launch kvm vm-0") == ["vm already exists with name `vm-0`"]
    assert await vmnode.errors("vm launch kvm a,a") == ["`a` is specified twice in VMs to launch"]
    assert await vmnode.errors("vm launch kvm 0") == ["invalid number of vms (must be > 0)"]
    assert await vmnode.errors("vm launch kvm bad/name") == [
        "invalid name; must only include letters, numbers, hyphens and underscores: `bad/name`"
    ]
    assert await vmnode.errors("vm start nosuch") == ["vm not found: nosuch"]
    assert await vmnode.errors("vm stop vm-0") == ["VM state error: vm-0"]
    await vmnode.run("vm start vm-0")
    assert await vmnode.errors("vm start vm-0") == ["vm is already running"]


async def test_tags_summary_and_columns(vmnode: MiniNode) -> None:
    await vmnode.run("vm launch kvm t[1-2]")
    await vmnode.run("vm tag all group red")
    await vmnode.run("vm tag t1 color blue")
    assert await vmnode.text("vm tag t1 group") == "name | value\nt1   | red"
    await vmnode.run("clear vm tag t1 group")
    assert await vmnode.text("vm tag t1") == "name | tag   | value\nt1   | color | blue"
    summary = await vmnode.text("vm info summary")
    assert summary.splitlines()[0].split() == [
        "id", "|", "name", "|", "state", "|", "type", "|", "uuid", "|", "cc_active", "|", "vlan"
    ]  # fmt: skip
    cols = await vmnode.text(
        ".columns name,type,filesystem,vlan,disks,tags .filter name=t2 vm info"
    )
    cells = [c.strip() for c in cols.splitlines()[1].split("|")]
    assert cells == ["t2", "kvm", "N/A", "[]", "[]", '{"group":"red"}']


async def test_clear_all_and_clear_namespace_kill_qemu(vmnode: MiniNode) -> None:
    await vmnode.run("vm launch kvm a")
    await vmnode.run("namespace other vm launch kvm b")
    pids = [vm.pid for vm in vmnode.state.vms.vms.values()]
    await vmnode.run("clear namespace other")
    assert [vm.name for vm in vmnode.state.vms.vms.values()] == ["a"]
    await vmnode.run("clear all")
    assert vmnode.state.vms.vms == {}
    assert not any(alive(p) for p in pids)


async def test_disk_create_info_snapshot(vmnode: MiniNode) -> None:
    vmnode.state.settings.filepath = str(Path(vmnode.state.settings.base) / "files")
    assert await vmnode.errors("disk create qcow2 foo.qcow2 16M") == []
    info = await vmnode.text("disk info foo.qcow2")
    assert "qcow2" in info
    assert "16.000 MB" in info
    assert await vmnode.errors("disk snapshot foo.qcow2 bar.qcow2") == []
    assert "foo.qcow2" in await vmnode.text("disk info bar.qcow2")
