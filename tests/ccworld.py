"""A real node and real agents for the cc tests: node in this process, agents as processes.

``CcWorld`` runs lines on the node through the bus (as any front end does),
starts agents (``python -m megabus.agent``) over TCP or a unix socket, and
waits for conditions with a deadline (never a timing assertion).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.bus.messages import CommandReply, CommandRequest, ErrorReply, Response
from megabus.config.settings import load
from megabus.handlers.main import Dispatcher, Node
from megabus.handlers.node.state import NodeState

NODE = "ccnode"
REPO = Path(__file__).resolve().parent.parent
#: Where ``ops/guest_image.py`` keeps the guest kernel and initrd between runs.
IMAGES = REPO / "build" / "images"


def guest_image(dest: Path = IMAGES) -> tuple[Path, Path]:
    """``miniccc.kernel`` and ``miniccc.initrd``, built (or found current) by the real builder."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "ops" / "guest_image.py"), "--dest", str(dest)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, f"ops/guest_image.py failed:\n{proc.stderr}"
    folder = Path(proc.stdout.strip())
    return folder / "miniccc.kernel", folder / "miniccc.initrd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CcWorld:
    bus: Bus
    base: Path
    state: NodeState
    agents: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.base / "files"

    async def run(self, line: str) -> list[Response]:
        out: list[Response] = []
        stream = self.bus.request_stream(
            self.bus.subjects.node_cmd(NODE), CommandRequest(line=line), idle_timeout=30
        )
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, ErrorReply):
                    raise AssertionError(item.error)
                if isinstance(item, CommandReply):
                    out.extend(item.responses)
        return out

    async def ok(self, line: str) -> list[Response]:
        resps = await self.run(line)
        errors = [r.error for r in resps if r.error]
        assert not errors, f"{line}: {errors}"
        return resps

    async def rows(self, line: str) -> list[list[str]]:
        return [row for r in await self.ok(line) for row in (r.tabular or [])]

    async def agent(self, name: str, *args: str, netns: str = "") -> asyncio.subprocess.Process:
        path = self.base / "agents" / name
        path.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "megabus.agent", "-path", str(path), "-retry", "0.2"]
        argv += ["-level", "debug", "-logfile", str(path / "agent.log"), *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        proc = await asyncio.create_subprocess_exec(*argv)
        self.agents.append(proc)
        return proc

    async def unix_socket(self, namespace: str = "minimega") -> str:
        """A unix socket the namespace's cc server listens on (as for a container)."""
        path = str(self.base / f"cc-{len(self.agents)}.sock")
        srv = await self.state.cc.server(namespace)
        await srv.listen_unix(path, None)
        return path

    async def clients(self, namespace: str = "minimega") -> set[str]:
        srv = await self.state.cc.server(namespace)
        return set(srv.clients)


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            # the conditions are remote state (agents, files): polling is the only way
            while not await cond():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def node_state(nats_url: str, base: Path) -> AsyncIterator[NodeState]:
    """A real node named ``cc`` in this process; yields its state while it runs."""
    settings = load(
        {"name": NODE, "nats": [nats_url], "base": str(base), "heartbeat": 1.0}, environ={}
    )
    node = Node(settings)
    await node.start()
    try:
        assert isinstance(node.executor, Dispatcher)
        yield node.executor.state
    finally:
        await node.stop()


@contextlib.asynccontextmanager
async def cc_world(nats_url: str, base: Path) -> AsyncIterator[CcWorld]:
    async with node_state(nats_url, base) as state:
        bus = await Bus.connect([nats_url], name="cctest")
        world = CcWorld(bus, base, state)
        try:
            yield world
        finally:
            for proc in world.agents:
                await stop(proc)
            await bus.close()


__all__ = ["CcWorld", "cc_world", "free_port", "guest_image", "node_state", "stop", "wait_for"]
