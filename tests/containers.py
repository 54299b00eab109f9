"""Helpers for the container tests: the image builder, waiting, reading ``vm info``, ``/proc``.

The fixtures (``minicccfs``, the image built once per session, and ``cnode``,
a real node whose base is the test's temporary folder) are in ``conftest.py``.
Containers are real: namespaces, overlayfs, cgroups, veths.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nodes import MiniNode

from megabus.handlers.model.vm import VM
from megabus.handlers.vms._container import ContainerRuntime

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
