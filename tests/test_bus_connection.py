"""Requests over the bus: streamed replies, idle timeouts, no responders, fan-out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.msg import Msg
from natsd import ClusterFactory, free_port

from megabus.bus.codec import decode, encode
from megabus.bus.connection import Bus
from megabus.bus.errors import (
    BusConnectError,
    BusTimeoutError,
    NoRespondersError,
    PayloadTooLargeError,
    RemoteError,
)
from megabus.bus.messages import (
    CommandReply,
    CommandRequest,
    CommandWorking,
    ErrorReply,
    Heartbeat,
    Message,
)

Script = Callable[[Bus, Msg], Coroutine[Any, Any, None]]


@contextlib.asynccontextmanager
async def responder(bus: Bus, node: str, script: Script) -> AsyncIterator[None]:
    """Serve ``node``'s command subject with ``script``, each request in its own task."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_msg(msg: Msg) -> None:
        task = asyncio.create_task(script(bus, msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sub = await bus.nc.subscribe(bus.subjects.node_cmd(node), cb=on_msg)
    try:
        yield
    finally:
        await sub.unsubscribe()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def reply(bus: Bus, msg: Msg, out: Message) -> None:
    data, headers = encode(out)
    await bus.nc.publish(msg.reply, data, headers=headers)


async def echo(bus: Bus, msg: Msg) -> None:
    req = decode(msg.data, CommandRequest)
    await reply(bus, msg, CommandReply(node=bus.node, rendered=req.line))


async def silent(bus: Bus, msg: Msg) -> None:
    await asyncio.Event().wait()


async def test_command_returns_the_nodes_reply(bus: Bus) -> None:
    async with responder(bus, "n1", echo):
        replies = await bus.command("n1", "vm info", idle_timeout=5)
    assert [r.rendered for r in replies] == ["vm info"]


async def test_keepalives_hold_the_stream_open_past_the_idle_timeout(bus: Bus) -> None:
    async def slow(bus: Bus, msg: Msg) -> None:
        # Four keep-alives span longer than one idle timeout.
        for i in range(4):
            await reply(bus, msg, CommandWorking(node="n1", elapsed=float(i)))
            await asyncio.sleep(0.2)
        await reply(bus, msg, CommandReply(node="n1", rendered="one", more=True))
        await reply(bus, msg, CommandReply(node="n1", rendered="two"))

    async with responder(bus, "n1", slow):
        stream = bus.request_stream(
            bus.subjects.node_cmd("n1"), CommandRequest(line="shell sleep"), idle_timeout=0.6
        )
        items = [item async for item in stream]
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["CommandWorking"] * 4 + ["CommandReply"] * 2
    assert [i.rendered for i in items if isinstance(i, CommandReply)] == ["one", "two"]


async def test_idle_timeout_when_the_node_goes_quiet(bus: Bus) -> None:
    async def once(bus: Bus, msg: Msg) -> None:
        await reply(bus, msg, CommandWorking(node="n1"))
        await asyncio.Event().wait()

    async with responder(bus, "n1", once):
        with pytest.raises(BusTimeoutError, match="no reply"):
            await bus.command("n1", "shell sleep 600", idle_timeout=0.3)


async def test_no_responders_names_the_subject(bus: Bus) -> None:
    with pytest.raises(NoRespondersError, match=r"no node serves mb\.v1\.node\.ghost\.cmd"):
        await bus.command("ghost", "vm info", idle_timeout=5)


async def test_error_reply_raises_remote_error(bus: Bus) -> None:
    async def refuse(bus: Bus, msg: Msg) -> None:
        await reply(bus, msg, ErrorReply(node="n1", error="bad request"))

    async with responder(bus, "n1", refuse):
        with pytest.raises(RemoteError, match="bad request") as info:
            await bus.command("n1", "vm info")
    assert info.value.node == "n1"


async def test_single_request_decodes_the_reply(bus: Bus) -> None:
    async with responder(bus, "n1", echo):
        got = await bus.request(
            bus.subjects.node_cmd("n1"), CommandRequest(line="hi"), CommandReply, timeout=5
        )
    assert got.rendered == "hi"


async def test_single_request_to_nobody(bus: Bus) -> None:
    with pytest.raises(NoRespondersError):
        await bus.request("nobody.here", CommandRequest(line="x"), CommandReply, timeout=5)


async def test_publish_too_large_is_reported(bus: Bus) -> None:
    huge = CommandRequest(line="x" * (bus.nc.max_payload + 1))
    with pytest.raises(PayloadTooLargeError, match="max payload"):
        await bus.publish("anything", huge)


async def test_publish_reaches_subscribers(bus: Bus) -> None:
    sub = await bus.nc.subscribe(bus.subjects.heartbeat("n1"))
    await bus.publish(
        bus.subjects.heartbeat("n1"), Heartbeat(node="n1", version="1", uptime=1, interval=1)
    )
    msg = await sub.next_msg(timeout=5)
    assert decode(msg.data, Heartbeat).node == "n1"
    assert msg.headers is not None
    assert msg.headers["Mb-Schema"] == "megabus.hb.v1"


async def test_connect_to_nothing_fails_clearly() -> None:
    port = free_port()
    with pytest.raises(BusConnectError, match=f"127.0.0.1:{port}"):
        await Bus.connect([f"nats://127.0.0.1:{port}"], name="x", timeout=0.5)


async def test_bad_prefix_is_refused(nats_url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await Bus.connect([nats_url], name="x", prefix="bad prefix")


async def test_close_is_idempotent(nats_url: str) -> None:
    b = await Bus.connect([nats_url], name="x")
    assert b.url == nats_url
    await b.close()
    await b.close()
    assert b.nc.is_closed


async def test_reconnects_to_another_cluster_server(nats_cluster: ClusterFactory) -> None:
    servers = await nats_cluster(3)
    b = await Bus.connect([s.client_url for s in servers], name="x")
    try:
        first = b.url
        await next(s for s in servers if s.client_url == first).stop()
        async with responder(b, "n1", echo):
            async with asyncio.timeout(15):
                while True:
                    try:
                        replies = await b.command("n1", "after failover", idle_timeout=1)
                        break
                    except (BusTimeoutError, BusConnectError, NoRespondersError):
                        await asyncio.sleep(0.2)
        assert replies[0].rendered == "after failover"
        assert b.url != first
    finally:
        await b.close()
