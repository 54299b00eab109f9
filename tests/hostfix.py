"""Helpers for the host-level tests (optimize, nuke, cc mount, debug): a node, /proc reads.

``vm_node`` is a real node (dispatcher, state, VLAN store on its own
nats-server) whose base is the test's folder, with ``clear all`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nodes import MiniNode, node_at

from megabus.bus.server import EmbeddedServer
from megabus.handlers.language.render import render

#: Generous bound for "soon" (a process gone, a file there).
SOON = 30.0


@contextlib.asynccontextmanager
async def vm_node(tmp: Path, prefix: str = "host") -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp / "js", port=0) as server,
        node_at(server.client_url, prefix, base=tmp / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


async def ok(node: MiniNode, line: str) -> str:
    """The rendered output of a line that must not fail (run once)."""
    batches = await node.run(line)
    errors = [r.error for b in batches for r in b if r.error]
    assert errors == [], f"{line}: {errors}"
    return "\n".join(render(b, node.state.flags) for b in batches)


async def error(node: MiniNode, line: str) -> str:
    """The one error of a line that must fail (the node keeps serving)."""
    errors = await node.errors(line)
    assert len(errors) == 1, f"{line}: {errors}"
    assert await node.text("echo still here") == "still here"
    return errors[0]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def thread_cpus(pid: int) -> list[set[int]]:
    """The CPU set of every thread of ``pid``."""
    return [os.sched_getaffinity(int(t)) for t in os.listdir(f"/proc/{pid}/task")]


def mounted(path: str | Path) -> bool:
    """Whether something is mounted on ``path``; never touches the path itself (a FUSE
    mount served by this very event loop would wait for it)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh)


async def wait_until(check: Callable[[], bool], what: str, limit: float = SOON) -> None:
    """Poll ``check`` in a thread until true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def rows(node: MiniNode, line: str) -> list[list[str]]:
    return [row for batch in await node.run(line) for r in batch for row in (r.tabular or [])]
