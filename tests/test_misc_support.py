"""A node in a test: real state, a real VlanStore on a real nats-server, the real dispatcher.

Other test modules import :func:`node_at` and :func:`transcript`. The grammar
holds every family that imports today, so these tests run before the whole
node exists; ``transcript`` records lines as 2.8's minitest does.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from megabus.bus.messages import Response
from megabus.bus.server import EmbeddedServer
from megabus.bus.subjects import Subjects
from megabus.cli.language.grammar import Grammar
from megabus.cli.language.render import render
from megabus.config.settings import Settings
from megabus.handlers import dispatch, registry
from megabus.handlers.dispatch import Dispatcher
from megabus.handlers.state import NodeState
from megabus.handlers.vlanstore import VlanStore


@dataclass
class StoreBus:
    """The parts of ``Bus`` the VLAN store uses, over a real connection."""

    nc: Client
    js: JetStreamContext
    subjects: Subjects
    node: str


def ensure_grammar() -> None:
    """Load the dispatcher's grammar from every family that exists yet."""
    try:
        dispatch.load_grammar()
        return
    except ImportError:
        pass
    for family in dispatch.FAMILIES:
        with contextlib.suppress(ImportError):
            importlib.import_module(f"megabus.handlers.{family}")
    grammar = Grammar()
    for handler in registry.HANDLERS:
        grammar.add(handler, handler.patterns)
    dispatch._grammar = grammar


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
    url: str, prefix: str, name: str = "n1", vlan_range: str = "101-4096"
) -> AsyncIterator[MiniNode]:
    """A test node named ``name`` connected to ``url`` under subject prefix ``prefix``."""
    ensure_grammar()
    settings = Settings(name=name, vlan_range=vlan_range, level="error", verbose=False)
    nc = await nats.connect(url)
    store = await VlanStore.open(
        StoreBus(nc, nc.jetstream(), Subjects(prefix), name), settings.vlan_bounds()
    )
    state = NodeState(settings=settings, vlans=store)
    state.flags.annotate = False
    try:
        yield MiniNode(state, Dispatcher(state, None))
    finally:
        log = state.extra.get("log")
        if log is not None:
            log.close()
        await store.close()
        await nc.close()


@pytest.fixture
async def nats_js_url(tmp_path: Path) -> AsyncIterator[str]:
    async with EmbeddedServer(tmp_path / "js", port=0) as server:
        yield server.client_url


@pytest.fixture
async def node(nats_js_url: str) -> AsyncIterator[MiniNode]:
    async with node_at(nats_js_url, "t1") as n:
        yield n


async def test_a_test_node_runs_lines_and_records_them(node: MiniNode) -> None:
    assert await node.text("echo hello   world") == "hello world"
    assert node.state.history == ["echo hello   world"]
