"""cc commands live in JetStream: they survive a restart of the node.

A node is stopped and a new one started with the same name, base and NATS
server. The agent that was connected redials and runs nothing twice; an
agent that connects only after the restart gets the commands meant for it,
``exec-once`` ones included, each once; new IDs follow the old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ccworld import CcWorld, free_port, node_state, stop, wait_for

from megabus.bus.connection import Bus

U1 = "77777777-7777-4777-8777-777777777777"
U2 = "88888888-8888-4888-8888-888888888888"


@contextlib.asynccontextmanager
async def node(nats_url: str, base: Path, bus: Bus) -> AsyncIterator[CcWorld]:
    async with node_state(nats_url, base) as state:
        yield CcWorld(bus, base, state)


async def test_commands_survive_a_node_restart(nats_url: str, tmp_path: Path) -> None:
    base = tmp_path / "node"
    port = free_port()
    marks = tmp_path / "marks"
    marks.mkdir()
    args = ("-parent", "127.0.0.1", "-port", str(port))
    bus = await Bus.connect([nats_url], name="cctest")
    agents: list[asyncio.subprocess.Process] = []
    try:
        async with node(nats_url, base, bus) as w:
            await w.ok(f"cc listen {port}")
            agents.append(await w.agent("a1", *args, "-uuid", U1))

            async def one() -> bool:
                return await w.clients() == {U1}

            await wait_for(one, "first agent")
            await w.ok(f"cc exec-once sh -c 'echo x >> {marks}/once'")
            await w.ok(f"cc filter uuid={U2}")
            await w.ok("cc exec echo for-u2")  # for an agent that is not there yet
            await w.ok("clear cc filter")
            await w.ok(f"cc exec sh -c 'echo all >> {marks}/all'")

            async def ran() -> bool:
                return (marks / "all").exists() and (marks / "once").exists()

            await wait_for(ran, "commands 1 and 3 on the first agent")

        # the node is gone; the first agent keeps redialling
        async with node(nats_url, base, bus) as w:
            await w.ok(f"cc listen {port}")
            agents.append(await w.agent("a2", *args, "-uuid", U2))

            async def both() -> bool:
                return await w.clients() == {U1, U2}

            await wait_for(both, "the first agent back and the late one in")
            rows = await w.rows("cc commands")
            assert [(r[0], r[2]) for r in rows] == [
                ("1", f"[sh -c echo x >> {marks}/once]"),
                ("2", "[echo for-u2]"),
                ("3", f"[sh -c echo all >> {marks}/all]"),
            ]
            await w.ok("cc exec echo after")  # once this is in, everything before it ran

            async def synced() -> bool:
                r = w.files / "miniccc_responses" / "4"
                return (r / U1 / "stdout").exists() and (r / U2 / "stdout").exists()

            await wait_for(synced, "command 4 on both agents")
            responses = w.files / "miniccc_responses"
            assert (responses / "2" / U2 / "stdout").read_text() == "for-u2\n"
            assert not (responses / "2" / U1).exists()
            # exec-once: once for the first agent, once for the late one; nothing twice
            assert (marks / "once").read_text() == "x\nx\n"
            assert (marks / "all").read_text() == "all\nall\n"
            rows = await w.rows("cc commands")
            assert [(r[0], r[3], r[5]) for r in rows] == [
                ("1", "2", "true"),
                ("2", "1", "false"),
                ("3", "2", "false"),
                ("4", "2", "false"),
            ]
    finally:
        for proc in agents:
            await stop(proc)
        await bus.close()
