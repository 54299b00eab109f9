"""A node in a test: real state, a real VlanStore on a real nats-server, the real dispatcher.

:func:`node_at` makes one (the ``node`` fixture of ``conftest.py`` is one on
its own server); :func:`transcript` records lines as 2.8's minitest does. The
grammar holds every family that imports today, so these tests run before the
whole node exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from megabus.bus.messages import Response
from megabus.bus.subjects import Subjects
from megabus.config.settings import Settings
from megabus.handlers import commands
from megabus.handlers.language.render import render
from megabus.handlers.main import Dispatcher
from megabus.handlers.net._vlanstore import VlanStore
from megabus.handlers.node import dispatch
from megabus.handlers.node.state import NodeState


@dataclass
class StoreBus:
    """The parts of ``Bus`` the VLAN store uses, over a real connection."""

    nc: Client
    js: JetStreamContext
    subjects: Subjects
    node: str


def ensure_grammar() -> None:
    """Register every command family and compile the dispatcher's grammar."""
    commands.load()
    dispatch.load_grammar()


@dataclass
class MiniNode:
    """One node: its state and a dispatcher to run lines on it."""

    state: NodeState
    dispatcher: Dispatcher

    async def run(self, line: str, namespace: str = "") -> list[list[Response]]:
        """Run a line as typed; return its batches."""
        batches: list[list[Response]] = []

        async def keep(batch: list[Response]) -> None:
            batches.append(batch)

        await self.dispatcher.run_line(line, namespace, keep)
        return batches

    async def text(self, line: str) -> str:
        """The rendered output of a line (all batches), errors left out."""
        return "\n".join(render(b, self.state.flags) for b in await self.run(line))

    async def errors(self, line: str) -> list[str]:
        """The errors of a line."""
        return [r.error for b in await self.run(line) for r in b if r.error]


async def transcript(node: MiniNode, script: str) -> str:
    """minitest's record of a script: ``## line``, sorted ``E:`` lines, rendered text."""
    out: list[str] = []
    for line in script.split("\n"):
        out.append(f"## {line}\n" if line else "\n")
        if not line:
            continue
        for batch in await node.run(line):
            errors = sorted(f"E: {r.error}" for r in batch if r.error)
            if errors:
                out.append("\n".join(errors) + "\n")
            rendered = render(batch, node.state.flags)
            if rendered:
                out.append(rendered + "\n")
    return "".join(out)


@contextlib.asynccontextmanager
async def node_at(
    url: str,
    prefix: str,
    name: str = "n1",
    vlan_range: str = "101-4096",
    base: str | Path | None = None,
) -> AsyncIterator[MiniNode]:
    """A test node named ``name`` connected to ``url`` under subject prefix ``prefix``.

    ``base`` is its base directory (default: the settings' default); the node's
    engines keep files under it, so it is set here, never changed later.
    """
    ensure_grammar()
    settings = Settings(name=name, vlan_range=vlan_range, level="error", verbose=False)
    if base is not None:
        settings.base = str(base)
    nc = await nats.connect(url)
    store = await VlanStore.open(
        StoreBus(nc, nc.jetstream(), Subjects(prefix), name), settings.vlan_bounds()
    )
    state = NodeState(settings=settings, vlans=store)
    state.flags.annotate = False
    try:
        yield MiniNode(state, Dispatcher(state, None))
    finally:
        log = state.logs
        if log is not None:
            log.close()
        await store.close()
        await nc.close()
