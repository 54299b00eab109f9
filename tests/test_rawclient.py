"""The stdlib NATS client of the one-shot path, against a real nats-server.

The far side of each request is a small nats-py responder that plays the
node's reply protocol (keep-alives, batches, errors), so the client's framing
is checked against what a real server delivers. The client is synchronous, so
it runs in a thread while the responder runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from megabus.bus.rawclient import (
    ConnectError,
    IdleTimeoutError,
    NoRespondersError,
    RawClient,
    parse_url,
)

SUBJECT = "mb.v1.node.n1.cmd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def responder(nats_url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


def reply(more: bool, rendered: str = "", **extra: Any) -> bytes:
    return json.dumps(
        {"type": "megabus.cmd.v1.reply", "node": "n1", "rendered": rendered, "more": more, **extra}
    ).encode()


WORKING = json.dumps({"type": "megabus.cmd.v1.working", "node": "n1", "elapsed": 1.0}).encode()


async def serve(nc: Client, handler: Callable[[Msg], Any]) -> None:
    async def cb(msg: Msg) -> None:
        for data in handler(msg):
            await nc.publish(msg.reply, data)

    await nc.subscribe(SUBJECT, cb=cb)
    await nc.flush()


def collect(url: str, payload: bytes = b"{}", idle: float = 5.0) -> list[dict[str, Any]]:
    with RawClient.connect([url]) as client:
        return list(client.request_stream(SUBJECT, payload, {"Mb-Schema": "x.y"}, idle))


async def test_stream_yields_batches_and_skips_keepalives(nats_url: str, responder: Client) -> None:
    seen: list[tuple[bytes, str]] = []

    def handler(msg: Msg) -> list[bytes]:
        seen.append((msg.data, (msg.headers or {}).get("Mb-Schema", "")))
        return [WORKING, reply(True, "first"), WORKING, reply(False, "second")]

    await serve(responder, handler)
    got = await asyncio.to_thread(collect, nats_url, b'{"line": "vlans"}')
    assert [r["rendered"] for r in got] == ["first", "second"]
    assert seen == [(b'{"line": "vlans"}', "x.y")]


async def test_large_reply_arrives_whole(nats_url: str, responder: Client) -> None:
    big = "x" * 3_000_000  # many socket reads

    await serve(responder, lambda msg: [reply(False, big)])
    got = await asyncio.to_thread(collect, nats_url)
    assert got[0]["rendered"] == big


async def test_error_reply_ends_stream(nats_url: str, responder: Client) -> None:
    error = json.dumps({"type": "megabus.v1.error", "node": "n1", "error": "bad request"})
    await serve(responder, lambda msg: [error.encode(), reply(False, "never")])
    got = await asyncio.to_thread(collect, nats_url)
    assert got == [{"type": "megabus.v1.error", "node": "n1", "error": "bad request"}]


async def test_no_responders_names_subject(nats_url: str) -> None:
    with pytest.raises(NoRespondersError, match=r"mb\.v1\.node\.n1\.cmd"):
        await asyncio.to_thread(collect, nats_url)


async def test_silent_node_hits_idle_timeout(nats_url: str, responder: Client) -> None:
    await serve(responder, lambda msg: [])
    with pytest.raises(IdleTimeoutError, match="did not answer") as info:
        await asyncio.to_thread(collect, nats_url, b"{}", 0.3)
    assert not info.value.got_any


async def test_one_connection_serves_many_requests(nats_url: str, responder: Client) -> None:
    await serve(responder, lambda msg: [reply(False, msg.data.decode())])

    def many() -> list[str]:
        with RawClient.connect(nats_url) as client:
            out = []
            for i in range(20):
                for r in client.request_stream(SUBJECT, str(i).encode(), {}, 5.0):
                    out.append(r["rendered"])
                assert client.alive()
            return out

    assert await asyncio.to_thread(many) == [str(i) for i in range(20)]


async def test_connect_tries_each_url(nats_url: str) -> None:
    dead = f"nats://127.0.0.1:{_free_port()}"

    def connect() -> str:
        with RawClient.connect([dead, nats_url], timeout=1) as client:
            return client.url

    assert await asyncio.to_thread(connect) == nats_url


def test_connect_failure_names_every_url() -> None:
    urls = [f"nats://127.0.0.1:{_free_port()}", f"nats://127.0.0.1:{_free_port()}"]
    with pytest.raises(ConnectError) as info:
        RawClient.connect(urls, timeout=1)
    for url in urls:
        assert url in str(info.value)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("nats://h:4223", ("h", 4223, {})),
        ("h", ("h", 4222, {})),
        ("nats://u:p%40ss@h:1", ("h", 1, {"user": "u", "pass": "p@ss"})),
        ("nats://tok@h", ("h", 4222, {"auth_token": "tok"})),
        ("nats://[::1]:5", ("::1", 5, {})),
    ],
)
def test_parse_url(url: str, want: tuple[str, int, dict[str, str]]) -> None:
    assert parse_url(url) == want


# tls:// is spoken since issue 15; ws:// is not.
@pytest.mark.parametrize("url", ["ws://h:1", "nats://h:notaport", "nats://:4222"])
def test_bad_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ConnectError, match="URL"):
        parse_url(url)


def test_wire_tags_match_the_message_classes() -> None:
    """The one-shot path spells the tags out to avoid msgspec; they must not drift."""
    from megabus.bus.codec import decode, schema_of
    from megabus.bus.messages import CommandReply, CommandRequest, CommandWorking, ErrorReply
    from megabus.bus.rawclient import ERROR, REPLY, WORKING
    from megabus.cli.oneshot import REQUEST_TAG, request_payload

    assert (
        schema_of(CommandReply(node="n")),
        schema_of(CommandWorking(node="n")),
        schema_of(ErrorReply(error="e")),
    ) == (REPLY, WORKING, ERROR)
    req = decode(request_payload("vm info", "ns"), CommandRequest)
    assert (req.line, req.namespace) == ("vm info", "ns")
    assert schema_of(req) == REQUEST_TAG
