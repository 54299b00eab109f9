"""``ops/guest_image.py``: the KVM guest's kernel and initramfs, without booting them.

The initramfs is unpacked with cpio and its Python, msgspec and agent bundle
are run in a chroot of it: that is what the guest's init runs, so an agent
that serves a real node from there (over a unix socket instead of
virtio-serial) is one the guest can run. The boot itself is in
``test_cc_serial.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import IMAGES, REPO, CcWorld, cc_world, guest_image, wait_for

#: Building the image first may download a kernel package.
pytestmark = pytest.mark.timeout(300)

U = "61616161-6161-4616-8616-616161616161"

sys.path.insert(0, str(REPO / "ops"))
import guest_image as builder  # noqa: E402 (the script under test)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _kernel, initrd = guest_image()
    root = tmp_path_factory.mktemp("initrd")
    with open(initrd, "rb") as fh:
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=fh, cwd=root, check=True)
    # the guest's init mounts devtmpfs; a chroot needs the one node commands use
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


def test_kernel_and_initrd_are_cached_between_runs() -> None:
    kernel, initrd = guest_image()
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (kernel, initrd)]
    again = guest_image()
    assert again == (kernel, initrd)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in again] == before
    assert kernel.parent == IMAGES
    # a bzImage: the x86 boot protocol's magic at 0x202
    assert kernel.read_bytes()[0x202:0x206] == b"HdrS"
    assert initrd.read_bytes()[:6] == b"070701"  # newc cpio, uncompressed


def test_init_loads_the_virtio_modules_after_their_dependencies(unpacked: Path) -> None:
    init = (unpacked / "init").read_text()
    m = re.search(r"for m in ([^;]+);", init)
    assert m is not None
    order = m.group(1).split()
    assert {"virtio_pci", "virtio_console"} <= set(order)
    present = {p.stem for p in (unpacked / "lib" / "modules" / "megabus").glob("*.ko")}
    assert set(order) == present
    for mod in order:
        ko = unpacked / "lib" / "modules" / "megabus" / f"{mod}.ko"
        for dep in builder.module_depends(ko):
            assert order.index(dep) < order.index(mod), f"{dep} must load before {mod}"
    assert "megabus agent -serial /dev/virtio-ports/cc" in init
    assert os.access(unpacked / "init", os.X_OK)


def test_python_in_the_initrd_is_small_and_complete(unpacked: Path) -> None:
    out = subprocess.run(
        ["chroot", str(unpacked), "/usr/bin/python3", "-c",
         "import asyncio, subprocess, socket, fcntl, json, msgspec, concurrent.futures, sys;"
         "print(sys.prefix)"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sys.base_prefix
    version = subprocess.run(
        ["chroot", str(unpacked), "/usr/bin/megabus", "agent", "-version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("megabus agent ")
    total = sum(p.stat().st_size for p in unpacked.rglob("*") if p.is_file() and not p.is_symlink())
    assert total < 80 * 1024 * 1024  # a RAM disk under TCG: every MB is copied at boot


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def test_the_initrd_agent_serves_a_real_node(world: CcWorld, unpacked: Path) -> None:
    sock = unpacked / "cc"
    srv = await world.state.cc.server("minimega")
    await srv.listen_unix(str(sock), None)
    agent_dir = unpacked / "tmp" / f"agent-{os.getpid()}"
    proc = await asyncio.create_subprocess_exec(
        "chroot", str(unpacked), "/usr/bin/megabus", "agent", "-family", "unix", "-parent", "/cc",
        "-uuid", U, "-path", f"/{agent_dir.relative_to(unpacked)}",
        "-retry", "0.2",
    )  # fmt: skip
    world.agents.append(proc)

    async def connected() -> bool:
        return U in await world.clients()

    await wait_for(connected, "the initrd's agent connected")
    await world.ok("cc exec sh -c 'cat /etc/hostname; exit 2'")

    async def answered() -> bool:
        return (world.files / "miniccc_responses" / "1" / U / "exitcode").exists()

    await wait_for(answered, "the initrd's agent answered")
    d = world.files / "miniccc_responses" / "1" / U
    assert (d / "stdout").read_text() == "miniccc\n"
    assert (d / "exitcode").read_text() == "2"
