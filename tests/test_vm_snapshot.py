"""vm snapshot / vm migrate / ns snapshot on a real node with real QEMU, and resuming from them.

"Resumes where it was" is checked on the guest's memory: the text screen
(0xb8000) of a guest that reached SeaBIOS's "no bootable device" is read with
``pmemsave`` before the snapshot and again in the VM launched from the files,
before it runs a single instruction. A fresh guest has a blank screen there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at, transcript

from megabus.bus.server import EmbeddedServer

TEXT_SCREEN = (0xB8000, 4000)
#: Polls below are bounded: this many tries, POLL seconds apart.
TRIES = 300
POLL = 0.1

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def vmnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "snap", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


async def qmp(node: MiniNode, vm: str, msg: dict[str, object], namespace: str = "") -> object:
    batches = await node.run(f"vm qmp {vm} '{json.dumps(msg)}'", namespace)
    resp = [r for b in batches for r in b]
    assert not resp[0].error, resp[0].error
    return json.loads(resp[0].response)["return"]


async def qmp_status(node: MiniNode, vm: str, namespace: str = "") -> str:
    batches = await node.run(f"""vm qmp {vm} '{{"execute": "query-status"}}'""", namespace)
    return str(json.loads(batches[0][0].response)["return"]["status"])


async def screen(node: MiniNode, vm: str, path: Path, namespace: str = "") -> bytes:
    args = {"val": TEXT_SCREEN[0], "size": TEXT_SCREEN[1], "filename": str(path)}
    await qmp(node, vm, {"execute": "pmemsave", "arguments": args}, namespace)
    return await asyncio.to_thread(path.read_bytes)


async def wait_for(check: object, what: str) -> None:
    assert callable(check)
    for _ in range(TRIES):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}")


async def booted_screen(node: MiniNode, vm: str, tmp: Path, namespace: str = "") -> bytes:
    """Wait until the guest printed something, then stop it and read its screen."""

    async def printed() -> bool:
        return any((await screen(node, vm, tmp / f"{vm}.probe", namespace))[::2])

    await wait_for(printed, f"{vm} to print on its screen")
    assert not (await node.run(f"vm stop {vm}", namespace))[0][0].error
    return await screen(node, vm, tmp / f"{vm}.before", namespace)


async def migrations_done(node: MiniNode, command: str, namespace: str = "") -> None:
    async def done() -> bool:
        batches = await node.run(f".columns status {command}", namespace)
        rows = batches[0][0].tabular or []
        assert all(r[0] != "failed" for r in rows), rows
        return bool(rows) and all(r[0] == "completed" for r in rows)

    await wait_for(done, f"{command} to complete")


async def test_vm_snapshot_resumes_where_it_was(vmnode: MiniNode, tmp_path: Path) -> None:
    files = Path(vmnode.state.settings.files_dir)
    assert await vmnode.errors("disk create qcow2 base.qcow2 16M") == []
    await vmnode.run("vm config memory 128")
    await vmnode.run("vm config disk base.qcow2")
    await vmnode.run("vm launch kvm src")
    await vmnode.run("vm start src")
    before = await booted_screen(vmnode, "src", tmp_path)

    assert await vmnode.errors("vm snapshot src saved/src.migrate saved/src.hdd") == []
    await migrations_done(vmnode, "vm snapshot")
    out = (await vmnode.text("vm snapshot")).splitlines()
    assert [c.strip() for c in out[0].split("|")] == ["id", "name", "status", "complete (%)"]
    assert [c.strip() for c in out[1].split("|")] == ["0", "src", "completed", "100.00"]
    assert (await vmnode.text(".columns state .filter name=src vm info")).split()[-1] == "PAUSED"
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "info", "--output=json", str(files / "saved" / "src.hdd"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    info = json.loads((await proc.communicate())[0])
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(files / "base.qcow2")

    # a new VM from the two files: same screen before it runs at all
    await vmnode.run(f"vm config migrate {files}/saved/src.migrate")
    await vmnode.run(f"vm config disk {files}/saved/src.hdd")
    assert await vmnode.errors("vm launch kvm dst") == []

    async def loaded() -> bool:
        return await qmp_status(vmnode, "dst") != "inmigrate"

    await wait_for(loaded, "the incoming migration")
    after = await screen(vmnode, "dst", tmp_path / "dst.after")
    assert after == before
    assert any(after[::2])
    # and a VM launched without the state file starts from a blank screen
    await vmnode.run("clear vm config migrate")
    await vmnode.run("vm launch kvm fresh")
    assert not any((await screen(vmnode, "fresh", tmp_path / "fresh"))[::2])

    assert await vmnode.errors("vm start dst") == []
    assert await qmp_status(vmnode, "dst") == "running"


async def test_vm_migrate_state_only_and_errors(vmnode: MiniNode) -> None:
    files = Path(vmnode.state.settings.files_dir)
    await vmnode.run("vm config memory 128")
    await vmnode.run("vm launch kvm m")
    assert await vmnode.text("vm migrate") == ""
    assert await vmnode.errors("vm migrate m sub/dir/m.migrate") == []
    await migrations_done(vmnode, "vm migrate")
    assert (files / "sub" / "dir" / "m.migrate").stat().st_size > 0
    assert await vmnode.errors("vm migrate nosuch x") == ["vm not found: nosuch"]
    assert await vmnode.errors("vm snapshot nosuch a b") == ["vm not found: nosuch"]
    await vmnode.run("vm kill m")
    assert await vmnode.errors("vm migrate m again.migrate") == ["vm not running: 0"]


async def test_ns_snapshot_relaunch_script_brings_the_namespace_back(
    vmnode: MiniNode, tmp_path: Path
) -> None:
    files = Path(vmnode.state.settings.files_dir)
    await vmnode.run("namespace lab")
    await vmnode.run("disk create qcow2 lab.qcow2 16M")
    await vmnode.run("vm config memory 128")
    await vmnode.run("vm config disk lab.qcow2")
    await vmnode.run("vm launch kvm web")
    await vmnode.run("clear vm config disk")
    await vmnode.run("vm config tags role db")
    await vmnode.run("vm launch kvm db")
    await vmnode.run("vm start all")
    screens = {vm: await booted_screen(vmnode, vm, tmp_path, "lab") for vm in ("web", "db")}

    assert await vmnode.errors("ns snapshot lab1") == []
    await migrations_done(vmnode, "vm snapshot", "lab")
    assert await vmnode.text("ns snapshot") == "completed | total\n2         | 2"
    assert await vmnode.errors("ns snapshot lab1") == ["snapshot with this name already exists"]
    folder = files / "snapshots" / "lab1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "db.migrate",
        "launch.mm",
        "web.hdd",
        "web.migrate",
    ]
    script = (folder / "launch.mm").read_text()
    assert script.startswith('namespace "lab"\n\nclear vm config\n')
    assert "vm config migrate file:snapshots/lab1/web.migrate\n" in script
    assert "vm config disk file:snapshots/lab1/web.hdd\n" in script
    assert "vm config tags role db\n" in script
    assert script.endswith("shell sleep 10\nvm stop all\nvm start all\n")

    # relaunch from the script in a clean node state (its sleep left out)
    await vmnode.run("clear namespace lab")
    for line in script.splitlines():
        if line and not line.startswith(("#", "shell sleep", "vm start", "vm stop")):
            for batch in await vmnode.run(line):
                assert [r.error for r in batch if r.error] == [], line
    for vm, before in screens.items():

        async def loaded(vm: str = vm) -> bool:
            return await qmp_status(vmnode, vm, "lab") != "inmigrate"

        await wait_for(loaded, f"{vm} to load its state")
        assert await screen(vmnode, vm, tmp_path / f"{vm}.after", "lab") == before
    tags = await vmnode.text(".columns name,tags .filter name=db vm info")
    assert '{"role":"db"}' in tags
    assert await vmnode.errors("vm start all") == []


async def test_snapshot_scripts_match_28(vmnode: MiniNode, compat_dir: Path) -> None:
    for name in ("vm_snapshot", "ns_snapshot"):
        script = (compat_dir / name).read_text().rstrip("\n")
        assert await transcript(vmnode, script) == (compat_dir / f"{name}.want").read_text()
        await vmnode.run("clear all")
