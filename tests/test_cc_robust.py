"""cc under stress: exec-once across agent restarts, bad frames from an agent."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, free_port, stop, wait_for

from megabus.bus import cc_messages as wire

U1 = "33333333-3333-4333-8333-333333333333"
U2 = "44444444-4444-4444-8444-444444444444"


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def test_exec_once_runs_once_per_client_across_restarts_and_reaches_late_agents(
    world: CcWorld,
) -> None:
    port = free_port()
    await world.ok(f"cc listen {port}")
    marks = world.base / "marks"
    marks.mkdir(parents=True)
    args = ("-parent", "127.0.0.1", "-port", str(port))
    first = await world.agent("a1", *args, "-uuid", U1)

    async def one() -> bool:
        return await world.clients() == {U1}

    await wait_for(one, "first agent")
    await world.ok(f"cc exec-once sh -c 'echo x >> {marks}/$(hostname)-$PPID-run'")
    await world.ok(f"cc exec-once sh -c 'echo once >> {marks}/{{uuid}}'".replace("{uuid}", "all"))

    async def ran() -> bool:
        return (marks / "all").exists()

    await wait_for(ran, "first run")
    await stop(first)
    again = await world.agent("a1", *args, "-uuid", U1)  # same agent, restarted
    await world.agent("a2", *args, "-uuid", U2)  # connects later

    async def two() -> bool:
        return await world.clients() == {U1, U2}

    await wait_for(two, "restarted and late agents")
    await world.ok("cc exec echo sync")  # a later command: once it is in, earlier ones ran

    async def synced() -> bool:
        r = world.files / "miniccc_responses" / "3"
        return (r / U1 / "stdout").exists() and (r / U2 / "stdout").exists()

    await wait_for(synced, "sync command on both")
    assert (marks / "all").read_text() == "once\nonce\n"  # a1 once, a2 once
    rows = await world.rows("cc commands")
    assert [(r[0], r[3], r[5]) for r in rows] == [
        ("1", "2", "true"),
        ("2", "2", "true"),
        ("3", "2", "false"),
    ]
    await stop(again)


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(wire.MAGIC)
    await wire.expect_magic(reader)
    hello = wire.Hello(client=wire.ClientInfo(uuid="55555555-5555-4555-8555-555555555555"))
    writer.write(wire.encode(hello))
    assert isinstance(await wire.read_frame(reader), wire.Welcome)
    return reader, writer


async def test_bad_frames_are_refused_and_harm_no_one(world: CcWorld) -> None:
    port = free_port()
    await world.ok(f"cc listen {port}")
    await world.agent("good", "-parent", "127.0.0.1", "-port", str(port), "-uuid", U1)

    async def good() -> bool:
        return U1 in await world.clients()

    await wait_for(good, "good agent")

    # garbage of a valid length: an error frame back, the connection lives on
    reader, writer = await _raw(port)
    writer.write(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
    frame = await wire.read_frame(reader)
    while isinstance(frame, wire.Heartbeat | wire.Commands):
        frame = await wire.read_frame(reader)
    assert isinstance(frame, wire.Error)
    assert frame.error.startswith("refused: bad frame")
    writer.write(wire.encode(wire.Heartbeat()))
    await writer.drain()

    # a 100 MB frame: refused before it is read, that connection dropped
    writer.write(struct.pack(">I", 100 * 1024 * 1024) + b"x" * 1024)
    await writer.drain()
    frames = []
    while True:
        try:
            frames.append(await wire.read_frame(reader))
        except asyncio.IncompleteReadError:
            break
    assert any(isinstance(f, wire.Error) and "exceeds" in f.error for f in frames)
    writer.close()

    # a truncated frame: the connection ends, nothing else does
    reader, writer = await _raw(port)
    writer.write(struct.pack(">I", 1000) + b"half")
    await writer.drain()
    writer.close()

    await world.ok("cc filter uuid=" + U1)
    await world.ok("cc exec echo still here")

    async def answered() -> bool:
        return (world.files / "miniccc_responses" / "1" / U1 / "stdout").exists()

    await wait_for(answered, "good agent still served")
    assert (world.files / "miniccc_responses" / "1" / U1 / "stdout").read_text() == "still here\n"
    assert await world.clients() == {U1}
