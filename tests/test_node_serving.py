"""A node serves commands: each in its own task, with keep-alives, surviving bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from natsd import free_port

from megabus.bus.codec import decode, encode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusTimeoutError, RemoteError
from megabus.bus.messages import (
    CommandReply,
    CommandRequest,
    CommandWorking,
    ErrorReply,
    Heartbeat,
)
from megabus.bus.security import read_credentials
from megabus.bus.server import port_open
from megabus.config.settings import Settings
from megabus.handlers.main import Node
from megabus.handlers.node.process import Emit, Executor


class Tiny:
    """A dispatcher with a handful of lines, standing in for the real one."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.barrier = asyncio.Barrier(100)

    async def execute(self, req: CommandRequest, emit: Emit) -> None:
        word, _, arg = req.line.partition(" ")
        if word == "sleep":
            await asyncio.sleep(float(arg))
        elif word == "together":
            # Completes only when 100 requests run at the same time.
            await self.barrier.wait()
        elif word == "boom":
            raise RuntimeError("boom")
        elif word == "forget":
            return
        elif word == "batches":
            await emit(CommandReply(node=self.node, rendered="first", more=True))
        elif word == "huge":
            await emit(CommandReply(node=self.node, rendered="x" * (32 * 1024 * 1024)))
            return
        await emit(CommandReply(node=self.node, rendered=req.line))


@contextlib.asynccontextmanager
async def tiny(settings: Settings, bus: Bus) -> AsyncIterator[Executor]:
    yield Tiny(settings.name)


def settings_for(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = {"name": "n1", "base": str(tmp_path / "base"), "heartbeat": 0.2}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path, nats_url: str) -> AsyncIterator[Node]:
    n = Node(settings_for(tmp_path, nats=[nats_url]), dispatcher_factory=tiny)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def raw_request(bus: Bus, subject: str, data: bytes) -> ErrorReply | CommandReply:
    msg = await bus.nc.request(subject, data, timeout=10)
    reply: ErrorReply | CommandReply = decode(msg.data, ErrorReply | CommandReply)
    return reply


async def test_a_command_gets_its_reply(node: Node, bus: Bus) -> None:
    replies = await bus.command("n1", "hello world")
    assert [(r.node, r.rendered, r.more) for r in replies] == [("n1", "hello world", False)]


async def test_batches_arrive_in_order(node: Node, bus: Bus) -> None:
    replies = await bus.command("n1", "batches")
    assert [(r.rendered, r.more) for r in replies] == [("first", True), ("batches", False)]


async def test_any_node_subject_is_served(node: Node, bus: Bus) -> None:
    data, _ = encode(CommandRequest(line="cluster wide"))
    reply = await raw_request(bus, bus.subjects.any_cmd(), data)
    assert isinstance(reply, CommandReply)
    assert reply.rendered == "cluster wide"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "malformed"),
        (b'{"type":"megabus.cmd.v1.request","line":7}', "$.line"),
        (b'{"type":"megabus.cmd.v1.reply","node":"x"}', "$.type"),
        (b"\x00" * (10 * 1024 * 1024), "malformed"),
    ],
    ids=["bad-json", "wrong-field-type", "wrong-message", "10MB-garbage"],
)
async def test_malformed_request_gets_an_error_and_the_node_keeps_serving(
    node: Node, bus: Bus, payload: bytes, expected: str
) -> None:
    reply = await raw_request(bus, bus.subjects.node_cmd("n1"), payload)
    assert isinstance(reply, ErrorReply)
    assert reply.node == "n1"
    assert "bad request" in reply.error
    assert expected in reply.error
    replies = await bus.command("n1", "still here")
    assert replies[0].rendered == "still here"


async def test_a_failing_command_is_an_error_reply(node: Node, bus: Bus) -> None:
    with pytest.raises(RemoteError, match="internal error: boom"):
        await bus.command("n1", "boom")
    assert (await bus.command("n1", "after"))[0].rendered == "after"


async def test_a_reply_too_large_for_the_server_is_an_error(node: Node, bus: Bus) -> None:
    with pytest.raises(RemoteError, match="reply too large"):
        await bus.command("n1", "huge")


async def test_a_command_without_a_last_batch_still_ends(node: Node, bus: Bus) -> None:
    replies = await bus.command("n1", "forget")
    assert [(r.rendered, r.more) for r in replies] == [("", False)]


async def test_hundred_requests_run_at_the_same_time(node: Node, bus: Bus) -> None:
    # Each request waits for all the others: a node that ran them one by one
    # would never finish any.
    results = await asyncio.gather(*(bus.command("n1", "together") for _ in range(100)))
    assert len(results) == 100
    assert all(r[-1].rendered == "together" and not r[-1].more for r in results)


async def test_concurrent_commands_on_one_connection_each_get_their_own_replies(
    node: Node, bus: Bus
) -> None:
    # Replies share one wildcard inbox per connection; each goes to its request.
    lines = [f"line {i}" if i % 3 else "batches" for i in range(60)]
    results = await asyncio.gather(*(bus.command("n1", line) for line in lines))
    for line, replies in zip(lines, results, strict=True):
        if line == "batches":
            assert [(r.rendered, r.more) for r in replies] == [("first", True), ("batches", False)]
        else:
            assert [(r.rendered, r.more) for r in replies] == [(line, False)]


async def test_a_reply_after_its_request_gave_up_reaches_no_other_request(
    node: Node, bus: Bus
) -> None:
    with pytest.raises(BusTimeoutError):
        await bus.command("n1", "sleep 0.6", idle_timeout=0.2)
    await asyncio.sleep(0.6)  # the late reply has arrived by now, and was dropped
    assert [r.rendered for r in await bus.command("n1", "next")] == ["next"]


async def test_long_commands_send_keepalives(node: Node, bus: Bus) -> None:
    stream = bus.request_stream(
        bus.subjects.node_cmd("n1"), CommandRequest(line="sleep 2.5"), idle_timeout=10
    )
    items = [item async for item in stream]
    assert isinstance(items[0], CommandWorking)
    assert items[0].node == "n1"
    assert items[0].elapsed > 0
    assert isinstance(items[-1], CommandReply)
    assert items[-1].rendered == "sleep 2.5"


async def test_stop_lets_running_requests_finish(tmp_path: Path, nats_url: str, bus: Bus) -> None:
    n = Node(settings_for(tmp_path, nats=[nats_url]), dispatcher_factory=tiny)
    await n.start()
    running = asyncio.create_task(bus.command("n1", "sleep 0.5"))
    await asyncio.sleep(0.1)  # let the request reach the node
    await n.stop()
    replies = await running
    assert replies[-1].rendered == "sleep 0.5"


async def test_heartbeats_are_published(tmp_path: Path, nats_url: str, bus: Bus) -> None:
    sub = await bus.nc.subscribe(bus.subjects.heartbeat("n1"))
    await bus.nc.flush()
    n = Node(settings_for(tmp_path, nats=[nats_url]), dispatcher_factory=tiny)
    await n.start()
    try:
        beats = [decode((await sub.next_msg(timeout=5)).data, Heartbeat) for _ in range(2)]
    finally:
        await n.stop()
    hb = beats[-1]
    assert hb.node == "n1"
    assert hb.interval == 0.2
    assert hb.cpus > 0
    assert hb.mem_total > 0
    assert 0 <= hb.mem_used <= hb.mem_total
    assert hb.nats_url == nats_url
    assert hb.uptime >= beats[0].uptime


async def test_discoverable_as_a_nats_micro_service(node: Node, bus: Bus) -> None:
    name = bus.subjects.service_name()
    msg = await bus.nc.request(f"$SRV.PING.{name}", b"", timeout=5)
    ping = json.loads(msg.data)
    assert ping["name"] == name
    assert ping["metadata"]["node"] == "n1"
    msg = await bus.nc.request("$SRV.INFO", b"", timeout=5)
    info = json.loads(msg.data)
    endpoints = {e["name"]: e["subject"] for e in info["endpoints"]}
    assert endpoints == {
        "info": bus.subjects.node_info("n1"),
        "schema": bus.subjects.node_schema("n1"),
    }
    msg = await bus.nc.request(endpoints["info"], b"", timeout=5)
    details = json.loads(msg.data)
    assert details["name"] == "n1"
    assert details["cmd"] == bus.subjects.node_cmd("n1")
    msg = await bus.nc.request(endpoints["schema"], b"", timeout=5)
    assert json.loads(msg.data)["node"] == "n1"


async def test_info_file_is_written_and_removed(tmp_path: Path, nats_url: str) -> None:
    n = Node(settings_for(tmp_path, nats=[nats_url]), dispatcher_factory=tiny)
    await n.start()
    try:
        info = json.loads(n.info_path.read_text())
        assert info["name"] == "n1"
        assert info["nats_url"] == nats_url
        assert info["prefix"] == "mb"
        assert isinstance(info["pid"], int)
    finally:
        await n.stop()
    assert not n.info_path.exists()


async def test_starts_its_own_server_when_none_listens(tmp_path: Path) -> None:
    port = free_port()
    n = Node(settings_for(tmp_path, nats_port=port), dispatcher_factory=tiny)
    await n.start()
    try:
        assert n.server is not None
        assert n.nats_url == f"nats://127.0.0.1:{port}"
        assert (tmp_path / "base" / "nats" / "nats-server.conf").exists()
        # The server requires credentials (generated into the base, test_auth.py).
        auth = tmp_path / "base" / "auth"
        client = await Bus.connect(
            [n.nats_url], name="cli", credentials=read_credentials(auth / "operator.json")
        )
        try:
            assert (await client.command("n1", "hi"))[0].rendered == "hi"
        finally:
            await client.close()
        # A second node on this host joins the running server, with a node's credentials.
        second = Node(
            settings_for(
                tmp_path / "2", name="n2", nats_port=port, credentials=str(auth / "node.json")
            ),
            dispatcher_factory=tiny,
        )
        await second.start()
        try:
            assert second.server is None
            assert second.nats_url == n.nats_url
        finally:
            await second.stop()
    finally:
        await n.stop()
    assert not await port_open("127.0.0.1", port)
