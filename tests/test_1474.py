"""minimega #1474 as a test: A's handler asks B, whose handler asks A back, 100 pairs each way.

In 2.7 the head node ran ``vm net add`` under the global command lock and
waited on a compute node, which allocated an alias and sent ``vlans add``
back to the head: the head needed the lock it held, and neither side moved.
Here every request runs in its own task and no lock is held across a bus
request, so the round trip A -> B -> A completes even with 100 such pairs in
flight from both sides at once.

The nodes are real, on a real nats-server, with the real dispatcher; two
words are added in front of it for the pair (no 2.8 command makes a node
call back the node that called it, since 2.8's guards forbid the recursion):

* ``ask <peer>``: while serving it, ask ``peer`` for ``back <me>``;
* ``back <origin>``: while serving it, run ``host name`` on ``origin``
  (the real ``host`` handler, through the real dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.bus.messages import CommandReply, CommandRequest
from megabus.config.settings import Settings
from megabus.handlers.main import Node, default_dispatcher
from megabus.handlers.node.process import DispatcherFactory, Emit, Executor

PAIRS = 100
#: Idle timeout of every request of the pair; nothing is ever silent that long.
TIMEOUT = 30.0


@dataclass
class Pair:
    """The real dispatcher with ``ask`` and ``back`` in front of it."""

    inner: Executor
    bus: Bus
    name: str
    inflight: int = 0
    peak: int = 0

    async def execute(self, req: CommandRequest, emit: Emit) -> None:
        word, _, arg = req.line.partition(" ")
        if word == "ask":
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            try:
                replies = await self.bus.command(arg, f"back {self.name}", idle_timeout=TIMEOUT)
            finally:
                self.inflight -= 1
        elif word == "back":
            replies = await self.bus.command(arg, "host name", idle_timeout=TIMEOUT)
        else:
            await self.inner.execute(req, emit)
            return
        responses = [r for rep in replies for r in rep.responses]
        await emit(CommandReply(node=self.name, responses=responses))


def factory(executors: dict[str, Pair]) -> DispatcherFactory:
    @contextlib.asynccontextmanager
    async def make(settings: Settings, bus: Bus) -> AsyncIterator[Executor]:
        async with default_dispatcher(settings, bus) as inner:
            executors[settings.name] = Pair(inner, bus, settings.name)
            yield executors[settings.name]

    return make


async def test_100_round_trips_each_way_at_once_all_complete(nats_url: str, tmp_path: Path) -> None:
    executors: dict[str, Pair] = {}
    nodes = [
        Node(
            Settings(name=name, nats=[nats_url], base=str(tmp_path / name)),
            dispatcher_factory=factory(executors),
        )
        for name in ("head", "compute")
    ]
    client = await Bus.connect([nats_url], name="client")
    try:
        for node in nodes:
            await node.start()

        async def ask(at: str, peer: str) -> str:
            replies = await client.command(at, f"ask {peer}", idle_timeout=TIMEOUT)
            (resp,) = [r for rep in replies for r in rep.responses]
            assert resp.error == ""
            return resp.response

        got = await asyncio.gather(
            *(ask("head", "compute") for _ in range(PAIRS)),
            *(ask("compute", "head") for _ in range(PAIRS)),
        )
        # every A -> B -> A came back to A and was answered by A's own handler
        assert got == ["head"] * PAIRS + ["compute"] * PAIRS
        # both sides had many handlers waiting on the other at the same time
        assert executors["head"].peak > 1
        assert executors["compute"].peak > 1
        assert executors["head"].inflight == executors["compute"].inflight == 0
    finally:
        await client.close()
        for node in nodes:
            await node.stop()
