"""Fault: the files directory's disk fills up during transfers and during ``vm launch``.

Small tmpfs mounts stand in for full disks: one under the node's base (its
files directory included), one under an agent's own files directory. A
``cc recv`` larger than the node's free space, and a ``cc send`` larger than
the agent's, must each fail with a clear error in the command's response,
leave no half-written file under the file's name, and not stop the node or
the agent: a small transfer works afterwards. A container or a KVM guest
(its disk's snapshot goes there) launched while the base's disk is full fails
with a clear error and leaves no VM that looks launched; ``vm flush`` leaves
nothing behind, and with room again the same launch works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ccworld import cc_world, free_port, wait_for
from containers import column
from nodes import node_at
from procs import must, run

from megabus.bus.server import EmbeddedServer
from megabus.handlers.cc.responses import PARTIAL

pytestmark = pytest.mark.timeout(180)

UUID = "99999999-9999-4999-8999-999999999999"
MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def tmpfs(path: Path, size: str) -> AsyncIterator[Path]:
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    await must("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        await run("umount", "-l", str(path))


def fill(path: Path, room: int) -> None:
    """Fill the filesystem of ``path`` until ``room`` bytes are left."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    (path / "ballast").write_bytes(b"\0" * max(0, free - room))


def files_under(path: Path) -> Iterator[Path]:
    return (p for p in path.rglob("*") if p.is_file())


async def test_transfers_into_a_full_disk_fail_clearly_and_leave_nothing_half_written(
    nats_url: str, tmp_path: Path
) -> None:
    base = tmp_path / "node"
    async with (
        tmpfs(base / "files", "8m") as files,
        tmpfs(base / "agents" / "a1", "4m") as agent_dir,
        cc_world(nats_url, base) as w,
    ):
        port = free_port()
        await w.ok(f"cc listen {port}")
        await w.agent("a1", "-parent", "127.0.0.1", "-port", str(port), "-uuid", UUID)

        async def connected() -> bool:
            return await w.clients() == {UUID}

        await wait_for(connected, "the agent")
        # cc send of 3 MiB into an agent's files directory with 1 MiB free
        (files / "big").write_bytes(os.urandom(3 * MIB))
        (files / "small").write_bytes(b"fits\n")
        fill(agent_dir, MIB)
        await w.ok("cc send big")
        responses = files / "miniccc_responses"

        async def answered(cmd: int) -> bool:
            return (responses / str(cmd) / UUID).is_dir()

        await wait_for(lambda: answered(1), "cc send's response")
        err = (responses / "1" / UUID / "stderr").read_text()
        assert "No space left on device" in err, err
        agent_files = [p.name for p in files_under(agent_dir)]
        assert "big" not in agent_files
        assert [n for n in agent_files if n.endswith(".part")] == []
        await w.ok("cc send small")
        await wait_for(lambda: answered(2), "the small cc send's response")
        assert (agent_dir / "files" / "small").read_text() == "fits\n"

        # cc recv of 2 MiB into the node's files directory with 1 MiB free
        (files / "big").unlink()
        source = tmp_path / "upload"
        source.write_bytes(os.urandom(2 * MIB))
        fill(files, MIB)
        await w.ok(f"cc recv {source}")
        await wait_for(lambda: answered(3), "cc recv's response")
        err = (responses / "3" / UUID / "stderr").read_text()
        assert err == f"{source}: No space left on device", err
        leftovers = [p for p in files_under(responses / "3") if p.name not in ("stderr",)]
        assert leftovers == []
        listing = await w.run("cc responses 3")
        assert [r.error for r in listing if r.error] == []
        (files / "ballast").unlink()
        small = tmp_path / "small-upload"
        small.write_text("back\n")
        await w.ok(f"cc recv {small}")
        await wait_for(lambda: answered(4), "the small cc recv's response")
        got = responses / "4" / UUID / str(small).lstrip("/")
        assert got.read_text() == "back\n"
        assert [p for p in files_under(responses) if p.name.endswith(PARTIAL)] == []


@pytest.mark.parametrize("kind", ["container", "kvm"])
async def test_a_vm_launched_on_a_full_disk_fails_clearly(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    if kind == "container":
        config = f"vm config filesystem {request.getfixturevalue('minicccfs')}"
    else:
        disk = tmp_path / "disk.qcow2"
        await must("qemu-img", "create", "-f", "qcow2", str(disk), "64M")
        config = f"vm config disk {disk}"
    base = tmp_path / "base"
    async with (
        tmpfs(base, "4m"),
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "df", base=base) as node,
    ):
        try:
            await asyncio.to_thread(fill, base, 0)
            assert await node.errors(config) == []
            errors = await node.errors(f"vm launch {kind} full")
            assert len(errors) == 1
            assert errors[0].startswith("vm full: ")
            assert errors[0].endswith(": no space left on device")
            assert await column(node, "state") == {"full": "ERROR"}
            # flushed, it leaves nothing behind; with room again, the launch works
            assert await node.errors("vm flush") == []
            assert await asyncio.to_thread(lambda: sorted(p.name for p in base.iterdir())) == [
                "ballast", "namespaces"
            ]  # fmt: skip
            await asyncio.to_thread((base / "ballast").unlink)
            assert await node.errors(f"vm launch {kind} full") == []
            assert await column(node, "state") == {"full": "BUILDING"}
        finally:
            await node.run("clear all")
