"""``cc mount`` for real: a container's root bind-mounted, an agent's guest through FUSE
(an agent process on this host, and a KVM guest under TCG), listed and cleared as 2.8.

Each agent here serves a folder of the test (``-fsroot``), never this host's
``/``: a mount left behind by a failing test must not expose the host to the
temporary folders' clean-up.
"""

from __future__ import annotations

import asyncio
import os
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from ccworld import CcWorld, cc_world, guest_image, wait_for
from hostfix import error, mounted, ok, rows, vm_node, wait_until
from nodes import MiniNode

from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.vm import VM, VMType

T = TypeVar("T")

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no FUSE on this host"),
]


# -- containers: a bind mount of the container's root ---------------------------------------


@pytest.fixture
async def cnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with vm_node(tmp_path, "ccm") as n:
        yield n


async def test_container_root_is_bind_mounted_listed_and_cleared(
    cnode: MiniNode, minicccfs: Path, tmp_path: Path
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    await ok(cnode, f"vm config filesystem {minicccfs}")
    await ok(cnode, "vm launch container c0")
    vm = cnode.state.vms.find("minimega", "c0")
    assert vm is not None
    try:
        assert await error(cnode, "cc mount c0") == "must provide a mount path"
        assert await error(cnode, f"cc mount c0 {tmp_path}/nope") == "mount point does not exist"
        assert await error(cnode, f"cc mount nosuch {mnt}") == "vm not found: nosuch"

        await ok(cnode, f"cc mount c0 {mnt}")
        assert mounted(mnt)
        assert "init" in os.listdir(mnt)
        assert await rows(cnode, "cc mount") == [["c0", vm.uuid, "n1:bind", str(mnt)]]
        assert await error(cnode, f"cc mount c0 {mnt}") == "already connected to n1:bind"
        # the very files the container sees: written here, there in its root
        (mnt / "from-host").write_text("hello")
        root = Path(vm.runtime.effective_path)
        assert (root / "from-host").read_text() == "hello"

        await ok(cnode, f"clear cc mount {mnt}")  # by path
        assert not mounted(mnt)
        assert await rows(cnode, "cc mount") == []

        await ok(cnode, f"cc mount c0 {mnt}")
        await ok(cnode, "clear cc commands")  # a part of cc: mounts stay (2.8 #1466)
        assert mounted(mnt)
        await ok(cnode, "clear cc")  # all of cc: mounts go
        assert not mounted(mnt)

        await ok(cnode, f"cc mount {vm.uuid} {mnt}")  # by UUID
        await ok(cnode, "vm kill c0")
        await ok(cnode, "vm flush")  # a flushed VM leaves no mount behind
        assert not mounted(mnt)
        assert await rows(cnode, "cc mount") == []
    finally:
        await cnode.run("clear cc mount")
        assert not mounted(mnt)


# -- an agent's guest through FUSE -----------------------------------------------------------


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        try:
            yield w
        finally:
            await w.run("clear cc mount")


def _guest_record(world: CcWorld, name: str) -> VM:
    """A KVM VM record for an agent that runs on this host (no QEMU needed to serve files)."""
    vms = world.state.vms
    vm = VM(
        id=vms.new_id(),
        name=name,
        namespace="minimega",
        type=VMType.KVM,
        config=VMConfig(),
        uuid=str(uuidlib.uuid4()),
        instance_path=str(world.base / "fake"),
    )
    vms.add(vm)
    return vm


async def test_agent_files_through_fuse(world: CcWorld, tmp_path: Path) -> None:
    guest = tmp_path / "guest"
    (guest / "etc").mkdir(parents=True)
    (guest / "etc" / "hostname").write_text("guest0\n")
    (guest / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    os.symlink("etc/hostname", guest / "link")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    vm = _guest_record(world, "g0")

    assert await _errors(world, f"cc mount g0 {mnt}") == [
        "no client for g0: the agent is not connected"
    ]
    sock = await world.unix_socket()
    await world.agent(
        "g0", "-family", "unix", "-parent", sock, "-uuid", vm.uuid, "-fsroot", str(guest)
    )

    async def connected() -> bool:
        return vm.uuid in await world.clients()

    await wait_for(connected, "the agent")
    await world.ok(f"cc mount g0 {mnt}")
    # the node runs in this event loop: every file operation on the mount goes to a
    # thread, or the loop that must relay it would be the one waiting for it
    try:
        assert mounted(mnt)
        assert await world.rows("cc mount") == [["g0", vm.uuid, "ccnode:fuse", str(mnt)]]
        assert sorted(await off(os.listdir, mnt)) == ["big", "etc", "link"]
        assert await off((mnt / "etc" / "hostname").read_text) == "guest0\n"
        assert await off(os.readlink, mnt / "link") == "etc/hostname"
        assert await off((mnt / "big").read_bytes) == (guest / "big").read_bytes()
        assert (await off((mnt / "big").stat)).st_size == (guest / "big").stat().st_size

        # writes land in the guest
        await off((mnt / "etc" / "new").write_text, "written from the node\n")
        assert (guest / "etc" / "new").read_text() == "written from the node\n"
        await off((mnt / "dir").mkdir)
        await off(os.rename, mnt / "etc" / "new", mnt / "dir" / "moved")
        assert (guest / "dir" / "moved").exists()
        await off(os.unlink, mnt / "dir" / "moved")
        await off(os.rmdir, mnt / "dir")
        assert not (guest / "dir").exists()
        with pytest.raises(FileNotFoundError):
            await off((mnt / "nothing").read_text)

        assert await _errors(world, f"cc mount g0 {mnt}") == ["already connected to ccnode:fuse"]
        await world.ok("clear cc mount g0")  # by name
        assert not mounted(mnt)
        assert await world.rows("cc mount") == []

        # the agent gone: the mount answers ENOTCONN, never hangs, and clears
        await world.ok(f"cc mount {vm.uuid} {mnt}")
        for proc in world.agents:
            proc.kill()
            await proc.wait()
        await wait_for(lambda: _gone(world, vm.uuid), "the agent to be gone")
        with pytest.raises(OSError, match="not connected"):
            await off(os.listdir, mnt / "etc")
        await world.ok(f"clear cc mount {vm.uuid}")
        assert not mounted(mnt)
    finally:
        await world.run("clear cc mount")
        await wait_until(lambda: not mounted(mnt), "the mount to go")


async def _gone(world: CcWorld, uuid: str) -> bool:
    return uuid not in await world.clients()


async def off(func: Callable[..., T], *args: object) -> T:
    """A blocking call in a thread (a file operation on a FUSE mount this loop serves)."""
    return await asyncio.to_thread(func, *args)


async def _errors(world: CcWorld, line: str) -> list[str]:
    return [r.error for r in await world.run(line) if r.error]


async def test_kvm_guest_files_through_fuse(world: CcWorld, tmp_path: Path) -> None:
    kernel, initrd = await asyncio.to_thread(guest_image)
    world.state.settings.accel = "tcg"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for line in (
        f"vm config kernel {kernel}",
        f"vm config initrd {initrd}",
        "vm config append console=ttyS0 quiet",
        "vm config memory 512",
        "vm launch kvm guest",
        "vm start guest",
    ):
        await world.ok(line)
    vm = world.state.vms.find("minimega", "guest")
    assert vm is not None
    try:

        async def connected() -> bool:
            return vm.uuid in await world.clients()

        await wait_for(connected, "the guest's agent", limit=120)
        await world.ok("cc exec sh -c 'echo made in the guest > /tmp/from-guest'")

        async def written() -> bool:
            return (world.files / "miniccc_responses" / "1" / vm.uuid).exists()

        await wait_for(written, "the guest's answer", limit=60)
        await world.ok(f"cc mount guest {mnt}")
        assert mounted(mnt)
        names = await off(os.listdir, mnt)
        assert "tmp" in names
        assert "proc" in names
        text = await off((mnt / "tmp" / "from-guest").read_text)
        assert text == "made in the guest\n"
        await off((mnt / "tmp" / "from-node").write_text, "made on the node\n")
        await world.ok("cc exec cat /tmp/from-node")
        out = world.files / "miniccc_responses" / "2" / vm.uuid / "stdout"

        async def answered() -> bool:
            return out.exists()

        await wait_for(answered, "cat in the guest", limit=60)
        assert out.read_text() == "made on the node\n"
        assert await world.rows("cc mount") == [["guest", vm.uuid, "ccnode:fuse", str(mnt)]]
        await world.ok("clear cc mount")
        assert not mounted(mnt)
    finally:
        await world.run("clear cc mount")
        await world.run("vm kill all")
        await world.run("vm flush")
