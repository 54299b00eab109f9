"""Nodes on a NATS cluster, each with its own server order; VLAN allocation retried.

Used by the cluster failover test and the fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.bus.errors import BusError
from megabus.config.settings import Settings
from megabus.handlers.main import Node


@contextlib.asynccontextmanager
async def nodes(urls: list[str], tmp_path: Path, count: int = 4) -> AsyncIterator[list[Node]]:
    """``count`` (at most 4) nodes ``n0``... started on ``urls``, each in another order."""
    orders = [urls, urls[1:] + urls[:1], urls[2:] + urls[:2], urls[::-1]][:count]
    started: list[Node] = []
    try:
        for i, order in enumerate(orders):
            n = Node(
                Settings(
                    name=f"n{i}",
                    nats=order,
                    base=str(tmp_path / f"base{i}"),
                    heartbeat=0.5,
                    vlan_range="100-1000",
                )
            )
            await n.start()
            started.append(n)
        yield started
    finally:
        for n in started:
            await n.stop()


async def vlans_table(bus: Bus, node: str) -> list[tuple[str, str]]:
    """``(alias, vlan)`` rows of ``vlans`` on ``node``."""
    (reply,) = await bus.command(node, "vlans")
    rows = [row for r in reply.responses for row in (r.tabular or [])]
    return sorted((row[-2], row[-1]) for row in rows)


async def allocate(bus: Bus, node: str, alias: str, failures: list[str]) -> None:
    """``vlans add``-free allocation (``vm config net``), retried until it succeeds."""
    for _ in range(200):
        try:
            replies = await bus.command(node, f"vm config net {alias}", idle_timeout=15)
        except BusError as err:
            failures.append(f"{node} {alias}: {err}")
            await asyncio.sleep(0.1)
            continue
        errors = [r.error for rep in replies for r in rep.responses if r.error]
        if not errors:
            return
        failures.append(f"{node} {alias}: {errors}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"{alias} on {node} never succeeded: {failures[-3:]}")


async def until_table(bus: Bus, node: str, expected: list[str]) -> None:
    # The node's cache follows the bucket through its watcher, which restarts
    # after the leader change; wait until it has caught up.
    async with asyncio.timeout(30):
        while sorted(a for a, _ in await vlans_table(bus, node)) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
