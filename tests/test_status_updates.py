"""Status updates of long commands (``read`` here), on a real node and nats-server.

A frequency of an hour makes the throttle deterministic: the first update goes
at once, the rest wait, and the newest one is sent when the command ends.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from natsd import until
from rich.console import Console

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.messages import StatusUpdate
from megabus.cli.args import Target
from megabus.cli.status import watch
from megabus.config.settings import Settings
from megabus.handlers.main import Node


@pytest.fixture
async def node(nats_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(Settings(name="n1", nats=[nats_url], base=str(tmp_path / "base")))
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def updates(bus: Bus) -> list[tuple[str, StatusUpdate]]:
    seen: list[tuple[str, StatusUpdate]] = []

    async def on_msg(msg: object) -> None:
        seen.append((msg.subject, decode(msg.data, StatusUpdate)))  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.statuses(), cb=on_msg)
    await bus.nc.flush()
    return seen


def script(tmp_path: Path, name: str, lines: int) -> str:
    path = tmp_path / name
    path.write_text("".join(f"echo {i}\n" for i in range(lines)))
    return str(path)


async def run(bus: Bus, line: str) -> list[str]:
    replies = await bus.command("n1", line)
    errors = [r.error for rep in replies for r in rep.responses if r.error]
    assert errors == []
    return [r.response for rep in replies for r in rep.responses]


async def test_read_publishes_first_and_last_progress_within_one_period(
    node: Node, bus: Bus, tmp_path: Path, updates: list[tuple[str, StatusUpdate]]
) -> None:
    await run(bus, "status updates 1h")
    out = await run(bus, f"read {script(tmp_path, 'a.mm', 50)}")
    assert out == [str(i) for i in range(50)]
    await until(lambda: len(updates) >= 2)
    await run(bus, "echo settle")  # a later command: anything left would be in by now
    assert [(s, u.node, u.topic, u.status, u.progress) for s, u in updates] == [
        ("mb.v1.status.n1.read", "n1", "read", "a.mm: line 1 of 50", 0.02),
        ("mb.v1.status.n1.read", "n1", "read", "a.mm: line 50 of 50", 1.0),
    ]


async def test_frequency_zero_publishes_nothing(
    node: Node, bus: Bus, tmp_path: Path, updates: list[tuple[str, StatusUpdate]]
) -> None:
    await run(bus, "status updates 0")
    assert await run(bus, "status updates") == ["status updates disabled"]
    await run(bus, f"read {script(tmp_path, 'off.mm', 20)}")
    await run(bus, "status updates 1h")
    await run(bus, f"read {script(tmp_path, 'on.mm', 2)}")
    await until(lambda: len(updates) >= 2)
    # one connection, in order: updates of the first read would come first
    assert [u.status for _, u in updates] == ["on.mm: line 1 of 2", "on.mm: line 2 of 2"]


async def test_megabus_status_shows_the_progress_bar(
    node: Node, nats_url: str, bus: Bus, tmp_path: Path, updates: list[tuple[str, StatusUpdate]]
) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    view = asyncio.create_task(watch(Target(node="n1", urls=[nats_url]), console))
    try:
        await run(bus, "status updates 1h")
        path = script(tmp_path, "bar.mm", 4)
        # the view subscribes after connecting: read again until it shows
        for _ in range(100):
            await run(bus, f"read {path}")
            await until(lambda: len(updates) >= 2)
            updates.clear()
            try:
                await until(lambda: "bar.mm: line 4 of 4" in screen.getvalue(), within=1)
                break
            except TimeoutError:
                continue
        text = screen.getvalue()
        assert "bar.mm: line 4 of 4" in text
        assert "100%" in text
        assert "read" in text
    finally:
        os.kill(os.getpid(), signal.SIGINT)
        assert await view == 0
