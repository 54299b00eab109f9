"""Fixtures for the container tests, and tests of the ``minicccfs`` image builder.

``minicccfs`` (session) builds the image with ``ops/images.py`` (cached between
runs); ``cnode`` is a real node (dispatcher, VLAN store on a real
nats-server) whose base is the test's temporary folder; it clears everything
at the end. Containers are real: namespaces, overlayfs, cgroups, veths.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from test_misc_support import MiniNode, node_at

from megabus.bus.server import EmbeddedServer
from megabus.handlers.vms.container import ContainerRuntime
from megabus.handlers.vms.model import VM

REPO = Path(__file__).resolve().parent.parent
IMAGES_PY = REPO / "ops" / "images.py"

#: Generous bound for things that happen "soon" (a process starting, a file appearing).
SOON = 30.0


def build_images(dest: Path | None = None) -> Path:
    """Run the builder; returns the images folder it printed."""
    args = [sys.executable, str(IMAGES_PY)]
    if dest is not None:
        args += ["--dest", str(dest)]
    run = subprocess.run(args, capture_output=True, text=True, check=False)
    assert run.returncode == 0, f"ops/images.py failed:\n{run.stdout}{run.stderr}"
    return Path(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def minicccfs() -> Path:
    """The ``minicccfs`` root, built (or found current) once per session."""
    image = build_images() / "minicccfs"
    assert (image / "init").is_file()
    return image


@pytest.fixture
async def cnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "ct") as n,
    ):
        n.state.settings.base = str(tmp_path / "base")
        try:
            yield n
        finally:
            await n.run("clear all")


async def wait_for(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` (in a thread: it may read files) until true; fail after SOON seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SOON
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def column(node: MiniNode, col: str) -> dict[str, str]:
    """``name -> value`` of one ``vm info`` column."""
    out = await node.text(f".columns name,{col} vm info")
    return {k.strip(): v.strip() for k, v in (line.split("|") for line in out.splitlines()[1:])}


def vm_named(node: MiniNode, name: str) -> VM:
    for vm in node.state.vms.vms.values():
        if vm.name == name:
            return vm
    raise AssertionError(f"no vm {name}")


def runtime(node: MiniNode, name: str) -> ContainerRuntime:
    rt = vm_named(node, name).runtime
    assert isinstance(rt, ContainerRuntime)
    return rt


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def exists(path: str | Path) -> bool:
    """Whether ``path`` exists (a dangling symlink counts)."""
    return os.path.lexists(path)


def read(*parts: str | Path) -> str:
    """The text of the file ``os.path.join(*parts)``."""
    return Path(*parts).read_text()


def in_container(pid: int, *argv: str) -> str:
    """Run ``argv`` in every namespace of the container whose pid 1 is ``pid``."""
    run = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", *argv],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/bin:/sbin:/usr/bin:/usr/sbin"},
    )
    assert run.returncode == 0, f"{argv} in container {pid}: {run.stderr}"
    return run.stdout


# -- the image builder ------------------------------------------------------------------


def test_image_has_busybox_an_init_and_a_python_that_runs_in_it(minicccfs: Path) -> None:
    assert os.readlink(minicccfs / "bin" / "sh") == "/bin/busybox"
    init = (minicccfs / "init").read_text()
    assert init.startswith("#!/bin/sh\n")
    assert "ifconfig lo up" in init
    # the interpreter copy works on its own inside the root (chroot: no host paths)
    run = subprocess.run(
        [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(minicccfs),
            "/usr/bin/python3",
            "-c",
            "import msgspec, megabus.bus.codec, sys; print(sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/bin:/usr/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(sys.version_info[:2])


def test_image_is_cached_and_megabus_refreshed_when_its_sources_change(tmp_path: Path) -> None:
    dest = tmp_path / "images"
    image = build_images(dest) / "minicccfs"
    base_stamp = (image / ".megabus-base").stat().st_mtime_ns
    busybox_inode = (image / "bin" / "busybox").stat().st_ino
    # a second run changes nothing
    build_images(dest)
    assert (image / ".megabus-base").stat().st_mtime_ns == base_stamp
    assert (image / "bin" / "busybox").stat().st_ino == busybox_inode
    # a stale megabus copy is refreshed in place, the base stays
    (image / ".megabus-code").write_text("stale\n")
    build_images(dest)
    assert (image / ".megabus-code").read_text() != "stale\n"
    assert (image / "bin" / "busybox").stat().st_ino == busybox_inode
